"""Collections split in buckets on FerretDB 1.x, one collection on MongoDB.

FerretDB 1.x finds even a bare `_id` by scanning the collection (SQLite: ~3 us per stored document; on
PostgreSQL the lookup is a sequential scan too, ~0.8 us per document: 66 ms for one person among 100,000
measured under load). A per-person read model that every request reads is therefore spread over
`FERRETDB_BUCKETS` collections by a hash of its `_id`, and each lookup or update scans one bucket (~400
documents at 100,000 people). MongoDB serves `_id` from its index: one collection there, same documents.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

FERRETDB_BUCKETS = 256


def bucket_collections(database: AsyncDatabase, name: str, ferretdb: bool) -> list[AsyncCollection]:
    """`name` on MongoDB; `name_00` ... `name_ff` on FerretDB."""
    if not ferretdb:
        return [database[name]]
    return [database[f"{name}_{n:02x}"] for n in range(FERRETDB_BUCKETS)]


def bucket_of(document_id: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(document_id.encode(), digest_size=4).digest(), "big") % buckets


def holding(buckets: list[AsyncCollection], document_id: str) -> AsyncCollection:
    """The collection that holds (or will hold) the document `document_id`."""
    return buckets[bucket_of(document_id, len(buckets))]


async def move_into_buckets(database: AsyncDatabase, name: str, buckets: list[AsyncCollection], batch: int,
                            insert: Callable[[AsyncCollection, list[dict[str, Any]]], Awaitable[int]]) -> int:
    """The documents of the single collection `name` (written before its buckets) into their buckets, then
    that collection dropped; how many `insert` says went in. Inserted `batch` at a time as they are read, so
    memory stays bounded; a start interrupted before the drop moves them again (`insert` decides what a
    document already in its bucket means)."""
    by_bucket: dict[int, list[dict[str, Any]]] = defaultdict(list)
    moved = 0
    async for document in database[name].find({}):
        number = bucket_of(document["_id"], len(buckets))
        by_bucket[number].append(document)
        if len(by_bucket[number]) == batch:
            moved += await insert(buckets[number], by_bucket.pop(number))
    for number, documents in by_bucket.items():
        moved += await insert(buckets[number], documents)
    await database[name].drop()
    return moved


DUPLICATE_KEY = 11000


async def insert_new(bucket: AsyncCollection, documents: list[dict[str, Any]]) -> list[int]:
    """Insert `documents` unordered; the positions of those whose `_id` the bucket holds already."""
    try:
        await bucket.insert_many(documents, ordered=False)
        return []
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return [e["index"] for e in errors]


async def inserted_new(bucket: AsyncCollection, documents: list[dict[str, Any]]) -> int:
    """Insert `documents` unordered; how many went in (those whose `_id` the bucket held already stay as
    they are there)."""
    return len(documents) - len(await insert_new(bucket, documents))


async def move_once_into_buckets(database: AsyncDatabase, name: str, buckets: list[AsyncCollection],
                                 batch: int) -> int:
    """`move_into_buckets` with `inserted_new`, if the single collection `name` still exists (it never does
    on MongoDB, where the buckets are that one collection, nor once moved): a document already in its bucket
    stays as it is there (it may have changed since it moved)."""
    if len(buckets) == 1 or name not in await database.list_collection_names():
        return 0
    return await move_into_buckets(database, name, buckets, batch, inserted_new)


async def find_in_buckets(buckets: list[AsyncCollection], query: Mapping[str, Any],
                          projection: Mapping[str, Any] | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """The documents matching `query` in every bucket, read side by side (reads are not serialised by our
    proxy); at most `limit` (0: all). For the rare reads by another field than `_id`: a scan of each bucket."""
    found = await asyncio.gather(*(bucket.find(dict(query), projection).limit(limit).to_list() for bucket in buckets))
    documents = [document for part in found for document in part]
    return documents[:limit] if limit else documents


def field_under(prefix: str, key: str) -> str | None:
    """The field path `prefix.key` for a document keyed by `key` inside one field (e.g. per share id);
    None for a key that cannot be a field name (a dot or a leading `$`; never made by `idempotent_id`)."""
    return None if "." in key or key.startswith("$") else f"{prefix}.{key}"
