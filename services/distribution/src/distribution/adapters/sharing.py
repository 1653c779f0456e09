"""Shares, tracked links and the tenants' authenticity policies in MongoDB."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from advocacy_common.repository import (
    FINGERPRINT_FIELD, NEWEST_FIRST, AlreadyExists, KeyReused, Page, Repository, UnitOfWork,
)

from ..models.authenticity import AuthenticityPolicy, TenantPolicy
from ..models.sharing import Share, ShareStatus, TrackedLink
from .erasure import anonymise_until_settled

COLLEAGUES_COMPARED = 500  # the most colleague signatures one preparation looks at


class MongoShares(Repository[Share]):
    collection_name = "shares"  # `_id` derives from the Idempotency-Key; events ride in `_outbox`

    def to_document(self, share: Share) -> dict[str, Any]:
        document = share.model_dump(exclude={"id"})
        document.update(_id=share.id, status=share.status.value, network=share.network.value)
        return document

    def from_document(self, document: Mapping[str, Any]) -> Share:
        return Share.model_validate({**document, "id": document["_id"]})

    async def get_retry(self, tenant: str, share_id: str, fingerprint: str) -> Share | None:
        document = await self.get_document(tenant, share_id)
        if document is None:
            return None
        if document.get(FINGERPRINT_FIELD) != fingerprint:
            raise KeyReused(share_id)
        return self._entity(document)

    async def add_prepared(self, share: Share, fingerprint: str) -> Share:
        stored, _ = await self.add_idempotent(share, fingerprint)
        # Read back: the database's copy (times in milliseconds) is what any retry will be answered with.
        return await self.get(share.tenant, share.id) or stored

    async def confirm(self, share: Share, uow: UnitOfWork) -> Share:
        return await self.save(share, uow, guard={"status": ShareStatus.PREPARED.value})

    async def page_of(self, tenant: str, ambassador_id: str, cursor: str | None, limit: int) -> Page[Share]:
        return await self.page({"tenant": tenant, "ambassador_id": ambassador_id}, cursor=cursor, limit=limit,
                               order=NEWEST_FIRST, scope=f"ambassador={ambassador_id}")

    async def find_by_post_url(self, tenant: str, post_url: str) -> Share | None:
        found = await self.find({"tenant": tenant, "post_url": post_url}, limit=1)
        return found[0] if found else None

    async def shared_content_ids(self, tenant: str, ambassador_id: str) -> set[str]:
        cursor = self.collection.find({"tenant": tenant, "ambassador_id": ambassador_id,
                                       "status": ShareStatus.CONFIRMED.value}, projection={"content_id": 1})
        return {document["content_id"] async for document in cursor}

    async def count_confirmed_since(self, tenant: str, ambassador_id: str, since: datetime) -> int:
        return await self.collection.count_documents({"tenant": tenant, "ambassador_id": ambassador_id,
                                                      "status": ShareStatus.CONFIRMED.value,
                                                      "confirmed_at": {"$gte": since}})

    async def slots_held_from(self, tenant: str, content_id: str, moment: datetime,
                              held_since: datetime) -> set[datetime]:
        cursor = self.collection.find({
            "tenant": tenant, "content_id": content_id, "recommended_at": {"$gte": moment},
            "$or": [{"status": ShareStatus.CONFIRMED.value}, {"created_at": {"$gte": held_since}}]},
            projection={"recommended_at": 1})
        return {document["recommended_at"] async for document in cursor}

    async def colleague_signatures(self, tenant: str, content_id: str, ambassador_id: str,
                                   bands: list[str]) -> list[list[int]]:
        # The LSH lookup: only shares with a band key in common come back (MongoDB: the multikey index on
        # signature_bands; FerretDB 1.x scans the collection for any filter without `_id`, as it did for
        # the whole content before, but returns only the candidates).
        if not bands:
            return []
        cursor = self.collection.find({"tenant": tenant, "content_id": content_id,
                                       "status": ShareStatus.CONFIRMED.value, "signature_bands": {"$in": bands}},
                                      projection={"ambassador_id": 1, "signature": 1}).limit(COLLEAGUES_COMPARED)
        return [document["signature"] async for document in cursor
                if document.get("ambassador_id") != ambassador_id and document.get("signature")]

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        # The version moves on, so a confirmation read before the erasure cannot write the person back.
        await anonymise_until_settled(self.collection, tenant, ambassador_id, {
            "$set": {"ambassador_id": erased, "text": None, "post_url": None}, "$inc": {"version": 1}})


class MongoLinks(Repository[TrackedLink]):
    collection_name = "links"  # `_id` is the code

    def to_document(self, link: TrackedLink) -> dict[str, Any]:
        return {"_id": link.code, **link.model_dump(exclude={"code"})}

    def from_document(self, document: Mapping[str, Any]) -> TrackedLink:
        return TrackedLink.model_validate({**document, "code": document["_id"]})

    async def by_code(self, code: str) -> TrackedLink | None:
        return self._entity(await self.collection.find_one({"_id": code}))

    async def ensure(self, link: TrackedLink) -> None:
        try:
            await self.add(link)
        except AlreadyExists:
            pass  # prepared before: the link stays as it was

    async def claim(self, tenant: str, code: str, share_id: str) -> bool:
        # A conditional single-document update: atomic on MongoDB, and on FerretDB 1.x behind the
        # write-serialising proxy (FerretDB alone applies updates of one document without isolation).
        result = await self.collection.update_one(
            {"_id": code, "tenant": tenant, "confirmed_share_id": {"$in": [None, share_id]}},
            {"$set": {"confirmed_share_id": share_id}})
        return result.matched_count == 1

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        await anonymise_until_settled(self.collection, tenant, ambassador_id, {"$set": {"ambassador_id": erased}})

    async def of_ambassador(self, tenant: str, ambassador_id: str) -> list[TrackedLink]:
        return await self.find({"tenant": tenant, "ambassador_id": ambassador_id})  # a scan on FerretDB 1.x


class MongoPolicies(Repository[TenantPolicy]):
    collection_name = "policies"  # `_id` is the tenant; `version` is the ETag

    def to_document(self, stored: TenantPolicy) -> dict[str, Any]:
        return {"_id": stored.tenant, "tenant": stored.tenant, "policy": stored.policy.model_dump(),
                "version": stored.version}

    def from_document(self, document: Mapping[str, Any]) -> TenantPolicy:
        return TenantPolicy.model_validate(document)

    async def current(self, tenant: str) -> TenantPolicy:
        return await self.get(tenant, tenant) or TenantPolicy(tenant=tenant)

    async def replace(self, tenant: str, policy: AuthenticityPolicy, expected_version: int) -> TenantPolicy:
        if expected_version == 0:  # never stored: the first writer inserts, a racing one gets AlreadyExists
            first = TenantPolicy(tenant=tenant, policy=policy, version=1)
            await self.add(first)
            return first
        return await self.save(TenantPolicy(tenant=tenant, policy=policy, version=expected_version))
