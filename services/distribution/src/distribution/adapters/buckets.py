"""Collections split in buckets on FerretDB 1.x, one collection on MongoDB.

FerretDB 1.x finds even a bare `_id` by scanning the collection (SQLite: ~3 us per stored document; on
PostgreSQL the lookup is a sequential scan too, ~0.8 us per document: 66 ms for one person among 100,000
measured under load). A per-person read model that every request reads is therefore spread over
`FERRETDB_BUCKETS` collections by a hash of its `_id`, and each lookup or update scans one bucket (~400
documents at 100,000 people). MongoDB serves `_id` from its index: one collection there, same documents.
"""

from __future__ import annotations

import hashlib

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

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
