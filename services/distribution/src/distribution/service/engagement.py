"""Engagement from connectors: their registration, their signed reports (202 after Kafka's ack), and the
comment tallies those reports feed.

A connector's report is recorded under its own id first, with its envelope, then published, then marked
acknowledged; the envelope id is the deterministic engagement id, so a retry after a failed publish
publishes the very same event, and a replay of an acknowledged id is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from advocacy_common.api_support import fingerprint, idempotent_id
from advocacy_common.auth import Principal, signature_unauthorized
from advocacy_common.envelope import Envelope
from advocacy_common.errors import Problem, conflict, invalid, not_found
from advocacy_common.events import EngagementKind
from advocacy_common.repository import AlreadyExists, UnitOfWork
from advocacy_common.secretbox import SecretUnreadable
from advocacy_common.topics import ENGAGEMENT

from ..models.engagement import (
    Connector, Report, SignatureRejected, attribution_of_link, attribution_of_share, engagement_received,
    new_connector_secret, verify_signature,
)
from ..models.projections import CommentTally, scoped_id
from ..models.sharing import TrackedLink
from ..options import EVENT_SOURCE, Options
from ..ports import Publisher, Repositories
from ..schemas import ConversionReport, EngagementReport, NewConnector

ReportType = type[EngagementReport] | type[ConversionReport]
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AwaitingReply:
    tally: CommentTally
    post_url: str | None


@dataclass(frozen=True)
class Engagement:
    repositories: Repositories
    publisher: Publisher
    options: Options

    async def register_connector(self, principal: Principal, request: NewConnector, idempotency_key: str | None,
                                 now: datetime) -> Connector:
        """A new connector with its signing secret; the same key and body return the first one again."""
        connector = Connector(id=idempotent_id(principal.tenant, "connector", idempotency_key),
                              tenant=principal.tenant, name=request.name, secret=new_connector_secret(),
                              created_at=now)
        try:
            return await _readable(self.repositories.connectors.register(
                connector, fingerprint(request.model_dump(mode="json"))))
        except AlreadyExists:
            raise conflict(f"A connector named {request.name!r} already exists.") from None

    async def connectors(self, tenant: str) -> list[Connector]:
        return await _readable(self.repositories.connectors.list(tenant))

    async def comments_awaiting_reply(self, principal: Principal) -> list[AwaitingReply]:
        """My posts with comments I have not replied to yet."""
        result = []
        for tally in await self.repositories.comments.awaiting_reply(principal.tenant, principal.ambassador_id):
            share = await self.repositories.shares.get(principal.tenant, tally.share_id)
            result.append(AwaitingReply(tally, share.post_url if share else None))
        return result

    async def ingest_report(self, principal: Principal, connector_id: str, report_type: ReportType,
                            raw_body: bytes, signature: str | None, now: datetime) -> str:
        """Verify, de-duplicate, publish and wait for Kafka; returns the engagement id."""
        tenant = principal.tenant
        connector = await _readable(self.repositories.connectors.get(tenant, connector_id))
        if connector is None:
            raise not_found("connector")
        try:
            verify_signature(connector.secret, signature, raw_body, now, self.options.webhook_tolerance_seconds)
        except SignatureRejected as error:
            raise signature_unauthorized(str(error)) from None
        report = _parse(report_type, raw_body)
        report_id = scoped_id(tenant, connector_id, report.id)
        report_fingerprint = fingerprint(report.model_dump(mode="json"))
        envelope = await self._recorded_envelope(tenant, report_id, report_fingerprint)
        if envelope is None:
            envelope = await self._envelope(tenant, connector.name, report)
            recorded = Report(id=report_id, tenant=tenant, connector_id=connector_id, source_event_id=report.id,
                              fingerprint=report_fingerprint, engagement_id=envelope.id, envelope=envelope,
                              received_at=now)
            if not await self.repositories.reports.record(recorded):
                raise conflict("This report id is being received right now; retry in a moment.")
        try:
            await self.publisher.publish(ENGAGEMENT, envelope)
        except Exception as error:
            raise Problem(503, "Service Unavailable", "The report could not be stored durably; retry with the "
                          "same id.", headers={"Retry-After": "5"}) from error
        await self.repositories.reports.acknowledge(tenant, report_id)
        return envelope.id

    async def _recorded_envelope(self, tenant: str, report_id: str, report_fingerprint: str) -> Envelope | None:
        """The envelope of an earlier, unacknowledged attempt with this id; refuses a replay of an acknowledged one."""
        existing = await self.repositories.reports.get(tenant, report_id)
        if existing is None:
            return None
        if existing.fingerprint != report_fingerprint:
            raise invalid("id", "was already used for a different report")
        if existing.acknowledged or existing.envelope is None:
            raise conflict("This report id was already received; it is counted once.",
                           engagement_id=existing.engagement_id)
        return existing.envelope

    async def _envelope(self, tenant: str, source: str, report: EngagementReport | ConversionReport) -> Envelope:
        """The report's event, attributed to its share or tracked link, in a unit of work of its own
        (published right away, not through an outbox: the answer waits for Kafka)."""
        if isinstance(report, ConversionReport):
            attribution = attribution_of_link(await self._link(tenant, report.tracked_link_code))
            event = engagement_received(tenant, attribution, kind=EngagementKind.CONVERSION, count=report.count,
                                        source=source, source_event_id=report.id, occurred_at=report.occurred_at,
                                        conversion_type=report.conversion_type)
        else:
            event = engagement_received(tenant, await self._attribute(tenant, report), kind=EngagementKind(report.kind),
                                        count=report.count, source=source, source_event_id=report.id,
                                        occurred_at=report.occurred_at)
        return UnitOfWork(tenant, EVENT_SOURCE).record(event, event_id=event.engagement_id)

    async def _attribute(self, tenant: str, report: EngagementReport) -> dict:
        shares = self.repositories.shares
        if report.share_id:
            share = await shares.get(tenant, report.share_id)
            if share is None:
                raise invalid("share_id", "matches no share")
            return attribution_of_share(share)
        if report.post_url:
            share = await shares.find_by_post_url(tenant, report.post_url)
            if share is None:
                raise invalid("post_url", "matches no confirmed share")
            return attribution_of_share(share)
        if report.tracked_link_code:
            return attribution_of_link(await self._link(tenant, report.tracked_link_code))
        raise invalid("share_id", "one of share_id, post_url or tracked_link_code is required")

    async def _link(self, tenant: str, code: str) -> TrackedLink:
        link = await self.repositories.links.get(tenant, code)
        if link is None:
            raise invalid("tracked_link_code", "matches no tracked link")
        return link


async def _readable(call: Awaitable[T]) -> T:
    """A stored secret sealed under a key this process does not hold is an operator's matter, not the caller's."""
    try:
        return await call
    except SecretUnreadable as error:
        log.error("a connector secret cannot be opened: %s; is its key still in DISTRIBUTION_SECRET_KEYS?", error)
        raise Problem(503, "Service Unavailable", "The connector's secret cannot be read right now; retry later.",
                      headers={"Retry-After": "60"}) from None


def _parse(report_type: type[BaseModel], raw_body: bytes) -> EngagementReport | ConversionReport:
    try:
        return report_type.model_validate_json(raw_body)  # type: ignore[return-value]
    except ValidationError as error:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in error.errors()]
        raise Problem(422, "Unprocessable Content", "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                      errors=errors) from None
