"""Tracked links in MongoDB: `_id` is the code; on FerretDB 1.x spread over bucket collections.

Every click whose link is not in the redirect's short cache reads its link by code. FerretDB 1.x
answers even that bare `_id` lookup with a scan of the collection (on PostgreSQL a sequential scan,
~0.8 us per stored document: 8 ms at 10,000 links on a quiet machine, and `links` grows with every
prepared share), so on FerretDB the links live in `links_00` ... `links_ff` by a hash of the code
(adapters/buckets.py) and a click scans 1/256 of them. MongoDB keeps one `links` collection, served
by its `_id` index. The few reads by person (erasure, GDPR export) visit every bucket.

Every change of a tenant's links (a claim, an erasure) counts one in `link_changes` (one small document
per tenant, `_id` the tenant), after the write: the redirect keeps the links it read for minutes and only
checks that count every few seconds (service/link_versions.py), one read by `_id` per tenant instead of
one read per link.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from advocacy_common.repository import Storage

from ..models.sharing import TrackedLink
from .buckets import bucket_collections, find_in_buckets, holding, move_once_into_buckets
from .erasure import anonymise_until_settled

log = logging.getLogger(__name__)
LINKS = "links"
LINK_CHANGES = "link_changes"  # `_id` tenant: `changes`, a count of the tenant's link changes
MOVE_BATCH = 200


def link_buckets(database: AsyncDatabase, ferretdb: bool) -> list[AsyncCollection]:
    """The collections holding the tracked links (one on MongoDB)."""
    return bucket_collections(database, LINKS, ferretdb)


def _document(link: TrackedLink) -> dict[str, Any]:
    return {"_id": link.code, **link.model_dump(exclude={"code"})}


def _link(document: Mapping[str, Any] | None) -> TrackedLink | None:
    if document is None:
        return None
    return TrackedLink.model_validate({**document, "code": document["_id"]})


class MongoLinks:
    """The `Links` port."""

    def __init__(self, storage: Storage):
        self.buckets = link_buckets(storage.database, storage.capabilities.ferretdb)
        self.change_counts = storage.database[LINK_CHANGES]

    def _holding(self, code: str) -> AsyncCollection:
        return holding(self.buckets, code)

    async def get(self, tenant: str, code: str) -> TrackedLink | None:
        link = await self.by_code(code)
        return link if link is not None and link.tenant == tenant else None

    async def by_code(self, code: str) -> TrackedLink | None:
        return _link(await self._holding(code).find_one({"_id": code}))

    async def ensure(self, link: TrackedLink) -> None:
        try:
            await self._holding(link.code).insert_one(_document(link))
        except DuplicateKeyError:
            pass  # prepared before: the link stays as it was

    async def claim(self, tenant: str, code: str, share_id: str) -> bool:
        # A conditional single-document update: atomic on MongoDB, and on FerretDB 1.x behind the
        # write-serialising proxy (FerretDB alone applies updates of one document without isolation).
        result = await self._holding(code).update_one(
            {"_id": code, "tenant": tenant, "confirmed_share_id": {"$in": [None, share_id]}},
            {"$set": {"confirmed_share_id": share_id}})
        if result.matched_count != 1:
            return False
        await self._changed(tenant)  # a retried claim counts again: one more re-read of the tenant's links
        return True

    async def anonymise(self, tenant: str, ambassador_id: str, erased: str) -> None:
        await anonymise_until_settled(self.buckets, tenant, ambassador_id, {"$set": {"ambassador_id": erased}})
        # Every time, even with nothing left to anonymise: a handler retried after a crash between the
        # two writes still moves the count on, and the redirect drops the person's cached links.
        await self._changed(tenant)

    async def changes(self, tenant: str) -> int:
        document = await self.change_counts.find_one({"_id": tenant})
        return int(document.get("changes", 0)) if document is not None else 0

    async def _changed(self, tenant: str) -> None:
        # After the link's write: a reader that read the count before the write re-reads after it. If this
        # fails the caller fails too (a confirmation is retried by its client, an erasure by the consumer).
        await self.change_counts.update_one({"_id": tenant}, {"$inc": {"changes": 1}}, upsert=True)

    async def of_ambassador(self, tenant: str, ambassador_id: str) -> list[TrackedLink]:
        # A scan of every bucket on FerretDB 1.x (rare: a GDPR export); MongoDB uses (tenant, ambassador_id).
        documents = await find_in_buckets(self.buckets, {"tenant": tenant, "ambassador_id": ambassador_id})
        return sorted((_link(document) for document in documents), key=lambda link: link.code)  # type: ignore[misc]


async def move_links(database: AsyncDatabase, ferretdb: bool) -> int:
    """On FerretDB, the links of the single `links` collection (written before the buckets) into their
    buckets, then that collection dropped; how many were moved. Idempotent: a link already in its bucket
    stays as it is there (a link changes only by its claim, written to the bucket once moved), and a start
    interrupted before the drop moves the rest again. Nothing to do on MongoDB or once moved."""
    moved = await move_once_into_buckets(database, LINKS, link_buckets(database, ferretdb), MOVE_BATCH)
    if moved:
        log.info("moved %d tracked links into their buckets", moved)
    return moved
