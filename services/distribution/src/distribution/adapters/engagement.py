"""Clicks, connectors and their reports in MongoDB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from advocacy_common.envelope import Envelope
from advocacy_common.repository import AlreadyExists, ModelRepository, Repository, UnitOfWork

from ..models.engagement import Click, Connector, Report


class MongoClicks(ModelRepository[Click]):
    # `_id` is code/visitor-hash for a visitor's first click (the insert itself says whether they are new),
    # code/random for later ones. Inserts only: no document is updated by two writers.
    collection_name = "clicks"
    model = Click

    async def record(self, click: Click, uow: UnitOfWork) -> bool:
        try:
            await self.add(click, uow)
        except AlreadyExists:
            return False
        return True


class MongoConnectors(ModelRepository[Connector]):
    collection_name = "connectors"  # unique (tenant, name)
    model = Connector

    async def register(self, connector: Connector, fingerprint: str) -> Connector:
        stored, _ = await self.add_idempotent(connector, fingerprint)
        return stored

    async def list(self, tenant: str) -> list[Connector]:
        return await self.find({"tenant": tenant}, sort=[("created_at", 1)])


class MongoReports(Repository[Report]):
    collection_name = "reports"  # `_id` is tenant/connector/report id

    def to_document(self, report: Report) -> dict[str, Any]:
        document = {"_id": report.id, **report.model_dump(exclude={"id", "envelope"})}
        if report.envelope is not None:
            document["envelope"] = report.envelope.to_document()
        return document

    def from_document(self, document: Mapping[str, Any]) -> Report:
        envelope = document.get("envelope")
        return Report.model_validate({**document, "id": document["_id"],
                                      "envelope": Envelope.from_document(envelope) if envelope else None})

    async def record(self, report: Report) -> bool:
        try:
            await self.add(report)
        except AlreadyExists:
            return False
        return True

    async def acknowledge(self, tenant: str, report_id: str) -> None:
        # The envelope is only needed until Kafka has it; dropping it keeps no ambassador id here.
        await self.collection.update_one({"_id": report_id, "tenant": tenant},
                                         {"$set": {"acknowledged": True}, "$unset": {"envelope": ""}})
