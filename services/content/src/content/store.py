"""The content database: collections, indexes and queries.

Every query a caller triggers filters by the caller's tenant. The scheduler's
due-item queries are the exception: it works for every tenant, and each write
it makes is keyed by the item's own `_id` and tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from advocacy_common.consuming import ProcessedEvents
from advocacy_common.outbox import notify_outbox, without_outbox

from .models import AUDIENCE_AXES, ANYONE, Status

DEFAULT_TENANT_SETTINGS = {"four_eyes": True, "version": 0}
# (sort value, _id) of the last item of the previous page.
After = tuple[Any, str] | None


@dataclass(frozen=True)
class ItemFilter:
    """The filters of the content list; None means 'any'."""

    status: Status | None = None
    campaign_id: str | None = None
    topic: str | None = None
    language: str | None = None
    publish_from: datetime | None = None
    publish_to: datetime | None = None

    def query(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.status is not None:
            query["status"] = self.status.value
        for name, field in (("campaign_id", "campaign_id"), ("topic", "topics"), ("language", "language")):
            if getattr(self, name) is not None:
                query[field] = getattr(self, name)
        window = {op: bound for op, bound in (("$gte", self.publish_from), ("$lt", self.publish_to)) if bound}
        if window:
            query["publish_at"] = window
        return query


class KeyReused(Exception):
    """An Idempotency-Key already used with another request body."""


class ContentStore:
    def __init__(self, database: AsyncDatabase):
        self.database = database
        self.campaigns: AsyncCollection = database["campaigns"]
        self.items: AsyncCollection = database["content_items"]
        self.ambassadors: AsyncCollection = database["ambassadors"]
        self.tenant_settings: AsyncCollection = database["tenant_settings"]
        # Ids of ambassador events already applied, against copies re-published by their relay.
        self.ledger = ProcessedEvents(database["processed_events"])

    async def create_indexes(self) -> None:
        await self.items.create_index([("tenant", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        await self.items.create_index([("tenant", ASCENDING), ("publish_at", ASCENDING)])
        await self.items.create_index([("status", ASCENDING), ("publish_at", ASCENDING)])
        await self.items.create_index([("status", ASCENDING), ("expires_at", ASCENDING)])
        await self.campaigns.create_index([("tenant", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        await self.ledger.create_indexes()

    # --- writes shared by every collection -------------------------------------------

    async def insert_idempotent(self, collection: AsyncCollection, document: dict[str, Any]) -> tuple[dict, bool]:
        """Insert a document whose `_id` comes from the Idempotency-Key; (document, created).

        A retry with the same key finds the first document; a reuse of the key
        with another body (another fingerprint) is refused.
        """
        try:
            await collection.insert_one(document)
            return without_outbox(document), True
        except DuplicateKeyError:
            existing = await collection.find_one({"_id": document["_id"], "tenant": document["tenant"]})
        if existing is None or existing.get("request_fingerprint") != document["request_fingerprint"]:
            raise KeyReused
        return without_outbox(existing), False

    async def update_guarded(self, collection: AsyncCollection, document: dict[str, Any],
                             update: dict[str, Any]) -> dict[str, Any] | None:
        """Apply `update` only if the document is still at the version (and status) we read.

        Returns the new document, or None when someone changed it meanwhile; this
        guard is what keeps two schedulers, or a request racing the scheduler,
        from both acting on the same state.
        """
        guard = {"_id": document["_id"], "tenant": document["tenant"], "version": document["version"]}
        if "status" in document:
            guard["status"] = document["status"]
        updated = await collection.find_one_and_update(guard, update, return_document=ReturnDocument.AFTER)
        return without_outbox(updated)

    # --- campaigns ----------------------------------------------------------------------

    async def get_campaign(self, tenant: str, campaign_id: str) -> dict[str, Any] | None:
        return _of_tenant(await self.campaigns.find_one({"_id": campaign_id}), tenant)

    async def list_campaigns(self, tenant: str, after: After, limit: int) -> tuple[list[dict], bool]:
        return await _page(self.campaigns, {"tenant": tenant}, "created_at", after, limit)

    async def list_campaigns_to_refresh(self, limit: int) -> list[dict]:
        """Campaigns (of every tenant) whose published items must be re-announced."""
        return await self.campaigns.find({"refresh_published": True}).limit(limit).to_list()

    # --- content items ------------------------------------------------------------------

    async def get_item(self, tenant: str, item_id: str) -> dict[str, Any] | None:
        return without_outbox(_of_tenant(await self.items.find_one({"_id": item_id}), tenant))

    async def notify_relay(self, item_id: str) -> None:
        """Point the relay at an item that now carries events (it then needs no scan)."""
        await notify_outbox(self.items, item_id)

    async def list_items(self, tenant: str, filters: ItemFilter, after: After,
                         limit: int) -> tuple[list[dict], bool]:
        return await _page(self.items, {"tenant": tenant, **filters.query()}, "created_at", after, limit)

    async def list_calendar(self, tenant: str, start: datetime, end: datetime, limit: int) -> list[dict]:
        """Items scheduled in [start, end), earliest first; drafts too, so planners see gaps and plans."""
        cursor = self.items.find({"tenant": tenant, "publish_at": {"$gte": start, "$lt": end}},
                                 projection={"_outbox": 0, "history": 0})
        return await cursor.sort([("publish_at", ASCENDING), ("_id", ASCENDING)]).limit(limit).to_list()

    async def list_published_for(self, tenant: str, values: dict[str, list[str]], after: After,
                                 limit: int) -> tuple[list[dict], bool]:
        return await _page(self.items, _published_for(tenant, values), "publish_at", after, limit)

    async def get_published_for(self, tenant: str, item_id: str, values: dict[str, list[str]]) -> dict | None:
        return without_outbox(await self.items.find_one({"_id": item_id, **_published_for(tenant, values)}))

    async def list_by_person(self, tenant: str, person: str) -> list[dict]:
        """Items a person created, proposed or edited (for erasure)."""
        query = {"tenant": tenant, "$or": [{"authors": person}, {"created_by": person}, {"proposed_by": person}]}
        return [without_outbox(doc) for doc in await self.items.find(query).to_list()]

    async def list_published_behind(self, campaign: dict[str, Any], limit: int) -> list[dict]:
        """Published items of the campaign whose last snapshot predates its current version."""
        query = {"tenant": campaign["tenant"], "campaign_id": campaign["_id"], "status": Status.PUBLISHED.value,
                 "$or": [{"campaign_version": {"$lt": campaign["version"]}}, {"campaign_version": {"$exists": False}}]}
        return [without_outbox(doc) for doc in await self.items.find(query).limit(limit).to_list()]

    async def list_due_for_publication(self, now: datetime, limit: int) -> list[dict]:
        cursor = self.items.find({"status": Status.APPROVED.value, "publish_at": {"$lte": now}})
        return [without_outbox(doc) for doc in await cursor.sort("publish_at", ASCENDING).limit(limit).to_list()]

    async def list_due_for_retirement(self, now: datetime, limit: int) -> list[dict]:
        cursor = self.items.find({"status": Status.PUBLISHED.value, "expires_at": {"$lte": now}})
        return [without_outbox(doc) for doc in await cursor.sort("expires_at", ASCENDING).limit(limit).to_list()]

    # --- the ambassador projection ---------------------------------------------------------

    @staticmethod
    def ambassador_key(tenant: str, ambassador_id: str) -> str:
        return f"{tenant}:{ambassador_id}"

    async def get_ambassador(self, tenant: str, ambassador_id: str) -> dict[str, Any] | None:
        return _of_tenant(await self.ambassadors.find_one({"_id": self.ambassador_key(tenant, ambassador_id)}),
                          tenant)

    # --- tenant settings ---------------------------------------------------------------------

    async def get_tenant_settings(self, tenant: str) -> dict[str, Any]:
        found = _of_tenant(await self.tenant_settings.find_one({"_id": tenant}), tenant)
        return found or {"_id": tenant, "tenant": tenant, **DEFAULT_TENANT_SETTINGS}

    async def save_tenant_settings(self, current: dict[str, Any], changes: dict[str, Any]) -> dict | None:
        """Version 0 means 'never saved': the first save inserts. None when another save won."""
        if current["version"] == 0:
            document = {**current, **changes, "version": 1}
            try:
                await self.tenant_settings.insert_one(document)
            except DuplicateKeyError:
                return None
            return document
        return await self.update_guarded(self.tenant_settings, current,
                                         {"$set": changes, "$inc": {"version": 1}})


def _of_tenant(document: dict[str, Any] | None, tenant: str) -> dict[str, Any] | None:
    """Reads go by bare `_id` (the only filter FerretDB 1.x pushes down to SQLite; any other
    scans the collection) and the tenant is checked here: another tenant's object is None."""
    return document if document is not None and document.get("tenant") == tenant else None


def _published_for(tenant: str, values: dict[str, list[str]]) -> dict[str, Any]:
    """Published items whose audience is open on each axis or names one of the ambassador's values."""
    query: dict[str, Any] = {"tenant": tenant, "status": Status.PUBLISHED.value}
    for axis in AUDIENCE_AXES:
        query[f"targets.{axis}"] = {"$in": [ANYONE, *values.get(axis, [])]}
    return query


async def _page(collection: AsyncCollection, query: dict[str, Any], sort_field: str, after: After,
                limit: int) -> tuple[list[dict], bool]:
    """One page, newest first by (sort_field, _id); True when more follow."""
    if after is not None:
        value, last_id = after
        query = {"$and": [query, {"$or": [{sort_field: {"$lt": value}},
                                          {sort_field: value, "_id": {"$lt": last_id}}]}]}
    cursor = collection.find(query, projection={"_outbox": 0})
    documents = await cursor.sort([(sort_field, DESCENDING), ("_id", DESCENDING)]).limit(limit + 1).to_list()
    return documents[:limit], len(documents) > limit
