"""The distribution database: collections, indexes and queries. Every query carries the tenant.

Projections (contents, ambassadors, charters, comments) are written by the event handlers;
shares, links, visits, connectors, reports and policies are this service's own state.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from advocacy_common.consuming import insert_once
from advocacy_common.outbox import notify_outbox, without_outbox

from .models import AmbassadorView, AuthenticityPolicy, CharterView, ContentView

CONFIRMED = "confirmed"
ERASURE_ATTEMPTS = 20
ERASURE_RECHECK_SECONDS = 0.2
PREPARED = "prepared"


async def find_of_tenant(collection: AsyncCollection, document_id: str, tenant: str) -> dict[str, Any] | None:
    """By bare `_id` (the only filter FerretDB 1.x hands to SQLite; anything more scans the collection),
    then the tenant is checked here: another tenant's document is as good as missing."""
    document = await collection.find_one({"_id": document_id})
    return document if document is not None and document.get("tenant") == tenant else None


def scoped_id(tenant: str, *parts: str) -> str:
    """A document id unique across tenants."""
    return "/".join((tenant, *parts))


class DistributionStore:
    def __init__(self, database: AsyncDatabase):
        self.database = database
        self.contents = database["contents"]
        self.ambassadors = database["ambassadors"]
        self.charters = database["charters"]
        self.comments = database["comments"]
        self.shares = database["shares"]
        self.links = database["links"]
        self.clicks = database["clicks"]
        self.connectors = database["connectors"]
        self.reports = database["reports"]
        self.policies = database["policies"]
        self.processed_events = database["processed_events"]

    @property
    def outbox_collections(self):
        return [self.shares, self.clicks]

    async def create_indexes(self) -> None:
        await self.contents.create_indexes([IndexModel([("tenant", ASCENDING), ("retired", ASCENDING),
                                                        ("publish_at", DESCENDING)])])
        await self.shares.create_indexes([
            IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING), ("status", ASCENDING),
                        ("confirmed_at", DESCENDING)]),
            IndexModel([("tenant", ASCENDING), ("content_id", ASCENDING), ("status", ASCENDING)]),
            IndexModel([("tenant", ASCENDING), ("content_id", ASCENDING), ("recommended_at", ASCENDING)]),
            IndexModel([("tenant", ASCENDING), ("post_url", ASCENDING)]),
            IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING), ("created_at", DESCENDING)]),
        ])
        await self.links.create_indexes([IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING)])])
        await self.comments.create_indexes([IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING)])])
        await self.processed_events.create_index("seen_at")
        await self.connectors.create_indexes([IndexModel([("tenant", ASCENDING), ("name", ASCENDING)],
                                                         unique=True)])

    # --- projections -------------------------------------------------------------------

    async def get_content(self, tenant: str, content_id: str) -> ContentView | None:
        document = await find_of_tenant(self.contents, scoped_id(tenant, content_id), tenant)
        return ContentView.model_validate(document) if document else None

    async def list_published_contents(self, tenant: str, now: datetime) -> list[ContentView]:
        cursor = self.contents.find({"tenant": tenant, "retired": False, "publish_at": {"$lte": now}})
        return [ContentView.model_validate(document) async for document in cursor]

    async def get_ambassador(self, tenant: str, ambassador_id: str) -> AmbassadorView | None:
        document = await find_of_tenant(self.ambassadors, scoped_id(tenant, ambassador_id), tenant)
        return AmbassadorView.model_validate(document) if document else None

    async def get_charter(self, tenant: str) -> CharterView:
        document = await find_of_tenant(self.charters, tenant, tenant)
        return CharterView.model_validate(document or {})

    async def list_comments_awaiting_reply(self, tenant: str, ambassador_id: str) -> list[dict[str, Any]]:
        cursor = self.comments.find({"tenant": tenant, "ambassador_id": ambassador_id}).sort("share_id", ASCENDING)
        return [document async for document in cursor
                if document.get("comments", 0) > document.get("replies", 0)]

    # --- shares --------------------------------------------------------------------------

    async def get_share(self, tenant: str, share_id: str) -> dict[str, Any] | None:
        return without_outbox(await find_of_tenant(self.shares, share_id, tenant))

    async def list_shares_of(self, tenant: str, ambassador_id: str, limit: int,
                             after: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
        """Newest first; `after` is the (created_at, id) of the last share of the previous page."""
        query: dict[str, Any] = {"tenant": tenant, "ambassador_id": ambassador_id}
        if after is not None:
            query["$or"] = [{"created_at": {"$lt": after[0]}}, {"created_at": after[0], "_id": {"$lt": after[1]}}]
        cursor = self.shares.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [without_outbox(document) async for document in cursor]

    async def get_share_by_post_url(self, tenant: str, post_url: str) -> dict[str, Any] | None:
        return without_outbox(await self.shares.find_one({"tenant": tenant, "post_url": post_url}))

    async def insert_share(self, document: dict[str, Any]) -> bool:
        return await insert_once(self.shares, document)

    async def list_shared_content_ids(self, tenant: str, ambassador_id: str) -> set[str]:
        cursor = self.shares.find({"tenant": tenant, "ambassador_id": ambassador_id, "status": CONFIRMED},
                                  projection={"content_id": 1})
        return {document["content_id"] async for document in cursor}

    async def count_confirmed_since(self, tenant: str, ambassador_id: str, since: datetime) -> int:
        return await self.shares.count_documents({"tenant": tenant, "ambassador_id": ambassador_id,
                                                  "status": CONFIRMED, "confirmed_at": {"$gte": since}})

    async def count_slots_taken_from(self, tenant: str, content_id: str, moment: datetime) -> int:
        return await self.shares.count_documents({"tenant": tenant, "content_id": content_id,
                                                  "recommended_at": {"$gte": moment}})

    async def list_colleague_signatures(self, tenant: str, content_id: str, ambassador_id: str,
                                        limit: int = 500) -> list[list[int]]:
        cursor = self.shares.find({"tenant": tenant, "content_id": content_id, "status": CONFIRMED},
                                  projection={"ambassador_id": 1, "signature": 1}).limit(limit)
        return [document["signature"] async for document in cursor
                if document.get("ambassador_id") != ambassador_id and document.get("signature")]

    async def confirm_share(self, tenant: str, share_id: str, update: dict[str, Any]) -> bool:
        result = await self.shares.update_one({"_id": share_id, "tenant": tenant, "status": PREPARED}, update)
        if result.modified_count == 1:
            await notify_outbox(self.shares, share_id)
        return result.modified_count == 1

    # --- links and visits ----------------------------------------------------------------

    async def ensure_link(self, document: dict[str, Any]) -> None:
        """Create the tracked link once; later preparations of the same triple find it unchanged."""
        await self.links.update_one({"_id": document["_id"]}, {"$setOnInsert": document}, upsert=True)

    async def get_link(self, code: str) -> dict[str, Any] | None:
        """By code alone: the public redirect has no tenant; the link document says whose it is."""
        return await self.links.find_one({"_id": code})

    async def get_link_of_tenant(self, tenant: str, code: str) -> dict[str, Any] | None:
        return await find_of_tenant(self.links, code, tenant)

    async def claim_link_for_share(self, tenant: str, code: str, share_id: str) -> bool:
        """One confirmed share per link: the first confirmation claims it (a retry of it still matches)."""
        result = await self.links.update_one(
            {"_id": code, "tenant": tenant, "confirmed_share_id": {"$in": [None, share_id]}},
            {"$set": {"confirmed_share_id": share_id}})
        return result.matched_count == 1

    async def insert_click(self, document: dict[str, Any]) -> bool:
        """Insert a click carrying its event, and leave the relay a hint so it needs no scan."""
        inserted = await insert_once(self.clicks, document)
        if inserted:
            await notify_outbox(self.clicks, document["_id"])
        return inserted

    # --- connectors and reports ------------------------------------------------------------

    async def insert_connector(self, document: dict[str, Any]) -> bool:
        return await insert_once(self.connectors, document)

    async def get_connector(self, tenant: str, connector_id: str) -> dict[str, Any] | None:
        return await find_of_tenant(self.connectors, connector_id, tenant)

    async def list_connectors(self, tenant: str) -> list[dict[str, Any]]:
        cursor = self.connectors.find({"tenant": tenant}, projection={"secret": 0}).sort("created_at", ASCENDING)
        return [document async for document in cursor]

    async def insert_report(self, document: dict[str, Any]) -> bool:
        return await insert_once(self.reports, document)

    async def get_report(self, tenant: str, report_id: str) -> dict[str, Any] | None:
        return await find_of_tenant(self.reports, report_id, tenant)

    async def mark_report_acknowledged(self, report_id: str) -> None:
        # The envelope is only needed until Kafka has it; dropping it keeps no ambassador id here.
        await self.reports.update_one({"_id": report_id},
                                      {"$set": {"acknowledged": True}, "$unset": {"envelope": ""}})

    # --- tenant policy ------------------------------------------------------------------------

    async def get_policy(self, tenant: str) -> tuple[AuthenticityPolicy, int]:
        document = await find_of_tenant(self.policies, tenant, tenant)
        if document is None:
            return AuthenticityPolicy(), 0
        return AuthenticityPolicy.model_validate(document["policy"]), document["version"]

    async def replace_policy(self, tenant: str, policy: AuthenticityPolicy, expected_version: int) -> bool:
        """Compare-and-set on the version, so two admins cannot overwrite each other unknowingly."""
        update = {"$set": {"policy": policy.model_dump(), "version": expected_version + 1, "tenant": tenant}}
        try:
            result = await self.policies.update_one({"_id": tenant, "version": expected_version}, update,
                                                    upsert=expected_version == 0)
        except DuplicateKeyError:
            return False
        return result.matched_count == 1 or result.upserted_id is not None

    # --- erasure ---------------------------------------------------------------------------------

    async def anonymise_ambassador(self, tenant: str, ambassador_id: str, erased: str) -> None:
        """Keep anonymous counts; drop the person from shares, links and comment tallies.

        FerretDB 1.x rewrites whole documents on update, so a concurrent writer (the outbox relay clearing
        a share) can undo our change: repeat until two checks a moment apart find nothing left.
        """
        who = {"tenant": tenant, "ambassador_id": ambassador_id}
        changes = [(self.shares, {"$set": {"ambassador_id": erased, "text": None, "post_url": None}}),
                   (self.links, {"$set": {"ambassador_id": erased}}),
                   (self.comments, {"$set": {"ambassador_id": erased}})]
        clean_checks = 0
        for _ in range(ERASURE_ATTEMPTS):
            remaining = 0
            for collection, update in changes:
                remaining += (await collection.update_many(who, update)).matched_count
            clean_checks = clean_checks + 1 if remaining == 0 else 0
            if clean_checks == 2:
                return
            await asyncio.sleep(ERASURE_RECHECK_SECONDS)
        raise RuntimeError(f"erasure of {ambassador_id} did not settle; the event will be retried")
