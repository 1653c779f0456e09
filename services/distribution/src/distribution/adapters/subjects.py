"""Which ambassador id holds each login (`advocacy_common.subjects`), kept in buckets on FerretDB.

Every request of a person starts with this lookup (`ambassador_id_of`), so on FerretDB 1.x one
`ambassador_subjects` collection of 100,000 claims made each request scan 100,000 documents (66 ms on
PostgreSQL under load): the claims are spread over the buckets of `buckets.py` instead, each claim in
the bucket of its own `_id`, with the documents and compare-on-`claimed_at` of `MongoSubjectHolders`.
MongoDB keeps the one `ambassador_subjects` collection.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from advocacy_common.subjects import COLLECTION, MongoSubjectHolders

from .buckets import bucket_collections, holding, insert_new, move_into_buckets

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000
MOVE_BATCH = 200  # claims per insert when moving them into their buckets


def subject_document_id(tenant: str, subject_key: str) -> str:
    """The `_id` `MongoSubjectHolders` gives a claim (its bucket is chosen by it)."""
    return f"{tenant}\x1f{subject_key}"


def subject_buckets(database: AsyncDatabase, ferretdb: bool) -> list[AsyncCollection]:
    return bucket_collections(database, COLLECTION, ferretdb)


class BucketedSubjectHolders:
    """`SubjectHolders` over the buckets: one claim document in the bucket of its `_id`."""

    def __init__(self, buckets: list[AsyncCollection]):
        self.buckets = buckets

    def _holders(self, tenant: str, subject_key: str) -> MongoSubjectHolders:
        return MongoSubjectHolders(holding(self.buckets, subject_document_id(tenant, subject_key)))

    async def claim_subject(self, tenant: str, subject_key: str, ambassador_id: str, claimed_at: datetime) -> None:
        await self._holders(tenant, subject_key).claim_subject(tenant, subject_key, ambassador_id, claimed_at)

    async def subject_holder(self, tenant: str, subject_key: str) -> str | None:
        return await self._holders(tenant, subject_key).subject_holder(tenant, subject_key)


async def move_subject_claims(database: AsyncDatabase, ferretdb: bool) -> int:
    """On FerretDB, the claims of the single `ambassador_subjects` collection (written before the buckets)
    into their buckets, then that collection dropped; how many were moved. Idempotent: a claim already in
    its bucket keeps the later `claimed_at` of the two, and a start interrupted before the drop moves
    them again. Nothing to do on MongoDB (one collection) or once moved."""
    if not ferretdb or COLLECTION not in await database.list_collection_names():
        return 0
    moved = await move_into_buckets(database, COLLECTION, subject_buckets(database, ferretdb), MOVE_BATCH,
                                    _insert_keeping_latest)
    log.info("moved %d subject claims into their buckets", moved)
    return moved


async def _insert_keeping_latest(bucket: AsyncCollection, documents: list[dict[str, Any]]) -> int:
    for number in await insert_new(bucket, documents):  # claimed in the bucket already (a moved claim, or a
        document = documents[number]                      # newer one): the latest claim wins
        await bucket.update_one({"_id": document["_id"], "claimed_at": {"$lte": document["claimed_at"]}},
                                {"$set": {k: v for k, v in document.items() if k != "_id"}})
    return len(documents)
