"""The content database: the MongoDB adapters of the ports, on the repository base.

The only module that knows collections, documents, operators and indexes.
Every query a caller triggers names the caller's tenant; the scheduler's
due-item queries are the exception (it works for every tenant, and each write
it makes is a compare-and-set on the item's own `_id`, tenant and version).

FerretDB 1.x notes (what MongoDB does instead in brackets):
- Only a filter on a bare `_id` is pushed down to SQLite; any other scans the
  collection. Reads by id go through the base (bare `_id`, tenant checked in
  Python); the projection's writes filter on `_id` first. [MongoDB uses the
  indexes below for every query.]
- No transactions: each state change with its events is one document write
  (the base's unit of work). [Same design on MongoDB.]
- Conditional updates are atomic across processes only behind the project's
  write-serialising proxy; the base's compare-and-set relies on it. [Atomic on
  MongoDB.]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from advocacy_common.consuming import Delivery, ProcessedEvents
from advocacy_common.cursors import CursorCodec
from advocacy_common.gdpr_export import COLLECTION as EXPORT_PARTS, MongoExportParts
from advocacy_common.subjects import StoredSubjectHolders
from advocacy_common.repository import (
    AlreadyExists, ModelRepository, Page, Repository, ServerCapabilities, SortKey, StaleWrite, Storage, UnitOfWork,
    apply_once, storable,
)

from .models import (
    ANYONE, AUDIENCE_AXES, EVENT_SOURCE, AmbassadorProjection, Campaign, ContentItem, ItemFilter, Status,
    TargetingProfile,
    TenantSettings, profile_values, targeting_keys,
)

EARLIEST_FIRST = SortKey("publish_at", descending=False)
PUBLISHED_FIRST = SortKey("publish_at")


class CampaignRepository(ModelRepository[Campaign]):
    collection_name = "campaigns"
    model = Campaign

    async def create_indexes(self) -> None:
        await self.collection.create_index([("tenant", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])

    async def newest_first(self, tenant: str, cursor: str | None, limit: int) -> Page[Campaign]:
        return await self.page({"tenant": tenant}, cursor=cursor, limit=limit)

    async def awaiting_refresh(self, limit: int) -> list[Campaign]:
        return await self.find({"refresh_published": True}, limit=limit)

    async def mark_refreshed(self, campaign: Campaign) -> bool:
        # Compare-and-set on the version the refresh read, but no new version: the flag is
        # bookkeeping of the worker, and an editor's ETag must not change under them.
        try:
            await self._compare_and_set(campaign.tenant, campaign.id, campaign.version,
                                        {"$set": {"refresh_published": False}}, None)
        except StaleWrite:
            return False
        return True


class ContentItemRepository(ModelRepository[ContentItem]):
    collection_name = "content_items"
    model = ContentItem

    async def create_indexes(self) -> None:
        for keys in ([("tenant", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                     [("tenant", ASCENDING), ("publish_at", ASCENDING)],
                     [("status", ASCENDING), ("publish_at", ASCENDING)],
                     [("status", ASCENDING), ("expires_at", ASCENDING)]):
            await self.collection.create_index(keys)

    def to_document(self, entity: ContentItem) -> dict[str, Any]:
        # `targets`: the audience with `*` on open axes, so that the feed is one `$in` per axis.
        return {**super().to_document(entity), "targets": targeting_keys(entity.audience)}

    async def newest_first(self, tenant: str, filters: ItemFilter, cursor: str | None,
                           limit: int) -> Page[ContentItem]:
        query: dict[str, Any] = {"tenant": tenant}
        if filters.status is not None:
            query["status"] = filters.status.value
        for value, field in ((filters.campaign_id, "campaign_id"), (filters.topic, "topics"),
                             (filters.language, "language")):
            if value is not None:
                query[field] = value
        window = {op: bound for op, bound in (("$gte", filters.publish_from), ("$lt", filters.publish_to)) if bound}
        if window:
            query["publish_at"] = window
        # A cursor belongs to the list with these filters: another list refuses it.
        scope = "\x1f".join(str(value) for value in (filters.status, filters.campaign_id, filters.topic,
                                                     filters.language, filters.publish_from, filters.publish_to))
        return await self.page(query, cursor=cursor, limit=limit, scope=scope)

    async def scheduled_between(self, tenant: str, start: datetime, end: datetime,
                                limit: int) -> list[ContentItem]:
        return await self.find({"tenant": tenant, "publish_at": {"$gte": start, "$lt": end}},
                               sort=[("publish_at", ASCENDING), ("_id", ASCENDING)], limit=limit)

    async def published_for(self, tenant: str, profile: TargetingProfile | None, cursor: str | None,
                            limit: int) -> Page[ContentItem]:
        # The query form of `is_targeted` (models.py): one `$in` per axis, then language and networks.
        values = profile_values(profile)
        query: dict[str, Any] = {"tenant": tenant, "status": Status.PUBLISHED.value}
        for axis in AUDIENCE_AXES:
            # Items stored before an axis existed have no key for it (`null` matches a missing field): anyone.
            query[f"targets.{axis}"] = {"$in": [ANYONE, None, *values[axis]]}
        if values["languages"]:
            query["language"] = {"$in": values["languages"]}
        networks = profile.networks if profile else None
        if networks is not None:
            query["networks"] = {"$in": [str(network) for network in networks]}
        return await self.page(query, cursor=cursor, limit=limit, order=PUBLISHED_FIRST, scope="published")

    async def touched_by(self, tenant: str, person: str) -> list[ContentItem]:
        return await self.find({"tenant": tenant, "$or": [{"authors": person}, {"created_by": person},
                                                          {"proposed_by": person}]})

    async def published_behind(self, campaign: Campaign, limit: int) -> list[ContentItem]:
        query = {"tenant": campaign.tenant, "campaign_id": campaign.id, "status": Status.PUBLISHED.value,
                 "$or": [{"campaign_version": {"$lt": campaign.version}}, {"campaign_version": None},
                         {"campaign_version": {"$exists": False}}]}
        return await self.find(query, limit=limit)

    async def due_for_publication(self, now: datetime, limit: int) -> list[ContentItem]:
        return await self.find({"status": Status.APPROVED.value, "publish_at": {"$lte": now}},
                               sort=[("publish_at", ASCENDING)], limit=limit)

    async def due_for_retirement(self, now: datetime, limit: int) -> list[ContentItem]:
        return await self.find({"status": Status.PUBLISHED.value, "expires_at": {"$lte": now}},
                               sort=[("expires_at", ASCENDING)], limit=limit)


class TenantSettingsRepository(Repository[TenantSettings]):
    """One document per tenant, `_id` the tenant; absent until first saved."""

    collection_name = "tenant_settings"

    def to_document(self, entity: TenantSettings) -> dict[str, Any]:
        return {"_id": entity.tenant, **entity.model_dump()}

    def from_document(self, document: Mapping[str, Any]) -> TenantSettings:
        return TenantSettings.model_validate(document)

    async def of_tenant(self, tenant: str) -> TenantSettings:
        return await self.get(tenant, tenant) or TenantSettings(tenant=tenant)

    async def save(self, entity: TenantSettings, uow: UnitOfWork | None = None,
                   guard: Mapping[str, Any] | None = None) -> TenantSettings:
        """Version 0 means 'never saved': the first save inserts; a racing first save is stale."""
        if entity.version > 0:
            return await super().save(entity, uow, guard)
        saved = entity.model_copy(update={"version": 1})
        try:
            await self.add(saved, uow)
        except AlreadyExists:  # another first save won
            raise StaleWrite(entity.tenant) from None
        return saved


class AmbassadorProjectionRepository(StoredSubjectHolders, Repository[AmbassadorProjection]):
    """`_id` `tenant:ambassador_id`; each document keeps the watermarks of the events applied to it."""

    collection_name = "ambassadors"

    @staticmethod
    def key(tenant: str, ambassador_id: str) -> str:
        return f"{tenant}:{ambassador_id}"

    def to_document(self, entity: AmbassadorProjection) -> dict[str, Any]:
        return {"_id": self.key(entity.tenant, entity.ambassador_id), **storable(entity.model_dump())}

    def from_document(self, document: Mapping[str, Any]) -> AmbassadorProjection:
        return AmbassadorProjection.model_validate(document)

    async def get(self, tenant: str, ambassador_id: str) -> AmbassadorProjection | None:  # type: ignore[override]
        return await super().get(tenant, self.key(tenant, ambassador_id))

    async def opted_in(self, tenant: str, ambassador_id: str, profile: TargetingProfile,
                       delivery: Delivery) -> bool:
        return await self._apply(tenant, ambassador_id, delivery,
                                 {"$set": {"opted_in": True, "profile": storable(profile.model_dump())}})

    async def profile_updated(self, tenant: str, ambassador_id: str, profile: TargetingProfile,
                              delivery: Delivery) -> bool:
        return await self._apply(tenant, ambassador_id, delivery, {"$set": {"profile": storable(profile.model_dump())}},
                                 on_insert={"opted_in": False})

    async def opted_out(self, tenant: str, ambassador_id: str, delivery: Delivery) -> bool:
        return await self._apply(tenant, ambassador_id, delivery, {"$set": {"opted_in": False},
                                                                   "$unset": {"profile": ""}})

    async def erased(self, tenant: str, ambassador_id: str, delivery: Delivery) -> bool:
        # The tombstone: `erased` keeps every later event (a replayed opt-in) off this document.
        return await self._apply(tenant, ambassador_id, delivery, {"$set": {"opted_in": False, "erased": True},
                                                                   "$unset": {"profile": ""}})

    async def _apply(self, tenant: str, ambassador_id: str, delivery: Delivery, update: dict[str, Any],
                     on_insert: Mapping[str, Any] | None = None) -> bool:
        # An upsert by `_id` guarded by the partition watermark (apply_once): a redelivered
        # event, or any event after the erasure, matches nothing and its insert hits the `_id`.
        key = {"_id": self.key(tenant, ambassador_id), "erased": {"$ne": True}}
        update = {**update, "$setOnInsert": {"tenant": tenant, "ambassador_id": ambassador_id, **(on_insert or {})}}
        return await apply_once(self.collection, key, update, delivery)


@dataclass(frozen=True)
class ContentStore:
    """The content database's repositories, and the ledger of ambassador events already applied."""

    campaigns: CampaignRepository
    items: ContentItemRepository
    tenant_settings: TenantSettingsRepository
    ambassadors: AmbassadorProjectionRepository
    ledger: ProcessedEvents
    export_parts: MongoExportParts

    @classmethod
    def on(cls, storage: Storage) -> ContentStore:
        return cls(CampaignRepository(storage), ContentItemRepository(storage), TenantSettingsRepository(storage),
                   AmbassadorProjectionRepository(storage),
                   # Ids of ambassador events already applied, against copies re-published by their relay.
                   ProcessedEvents(storage.database["processed_events"]),
                   MongoExportParts(storage.database[EXPORT_PARTS], EVENT_SOURCE))

    @classmethod
    async def open(cls, database: AsyncDatabase, cursor_key: str) -> ContentStore:
        return cls.on(await Storage.open(database, cursor_key))

    @classmethod
    def without_detection(cls, database: AsyncDatabase, cursor_key: str) -> ContentStore:
        """For a process built outside an event loop (the worker): the server is not asked for its
        capabilities, and the more restrictive ones (FerretDB 1.x's) are assumed. No content adapter
        consults them; were one to batch updates, 50 statements per command work on both servers."""
        return cls.on(Storage(database, ServerCapabilities(ferretdb=True, version="not detected"),
                              CursorCodec(cursor_key.encode())))

    async def create_indexes(self) -> None:
        await self.items.create_indexes()
        await self.campaigns.create_indexes()
        await self.ledger.create_indexes()
