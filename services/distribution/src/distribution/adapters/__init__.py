"""The MongoDB adapters of distribution's ports: the only place that knows collections, documents,
operators and FerretDB 1.x tactics (each commented where it is used)."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from typing import Any

from advocacy_common.gdpr_export import COLLECTION as EXPORT_PARTS, MongoExportParts
from advocacy_common.repository import ServerCapabilities, Storage, create_indexes_one_by_one
from advocacy_common.secretbox import SecretBox

from ..options import EVENT_SOURCE

from ..ports import Repositories
from .engagement import MongoClicks, MongoConnectors, MongoEngagementTotals, MongoReports, ResealCount
from .projections import (
    MongoAmbassadorProjection, MongoCharterProjection, MongoCommentTallies, MongoContentProjection,
    ambassador_buckets, readable,
)
from .shared_contents import MongoSharedContents, drop_earlier_shared_contents
from .links import LINKS, MongoLinks, move_links
from .sharing import SHARES, MongoPolicies, MongoShares, MongoSignatureBooks, move_shares, share_buckets
from .subjects import move_subject_claims

__all__ = ["MongoConnectors", "ResealCount", "ambassador_documents", "create_indexes", "mongo_repositories",
           "outbox_collections", "outbox_queues", "outbox_swept_queues", "processed_events", "share_documents",
           "upgrade_documents", "OUTBOX_SWEEP_SLICE"]
PROCESSED_EVENTS = "processed_events"


def mongo_repositories(storage: Storage, secret_box: SecretBox) -> Repositories:
    """Every repository of distribution on one database; `secret_box` seals the connectors' secrets."""
    return Repositories(contents=MongoContentProjection(storage), ambassadors=MongoAmbassadorProjection(storage),
                        charters=MongoCharterProjection(storage), comments=MongoCommentTallies(storage),
                        shares=MongoShares(storage), shared=MongoSharedContents(storage),
                        books=MongoSignatureBooks(storage), links=MongoLinks(storage),
                        clicks=MongoClicks(storage),
                        connectors=MongoConnectors(storage, secret_box), reports=MongoReports(storage),
                        totals=MongoEngagementTotals(storage), policies=MongoPolicies(storage),
                        exports=MongoExportParts(storage.database[EXPORT_PARTS], EVENT_SOURCE))


async def ambassador_documents(database: AsyncDatabase, query: dict[str, Any]) -> list[dict[str, Any]]:
    """The ambassador projection's documents matching `query`, from every collection that holds them, by `_id`
    (checks and tooling; the service itself reads one person by id), each with its profile as a nested document
    (`projections.readable`: stored as one string, which `query` cannot look into)."""
    ferretdb = (await ServerCapabilities.detect(database)).ferretdb
    existing = set(await database.list_collection_names())
    found = [dict(readable(document)) for collection in ambassador_buckets(database, ferretdb)
             if collection.name in existing async for document in collection.find(query)]
    return sorted(found, key=lambda document: document["_id"])


def processed_events(database: AsyncDatabase) -> AsyncCollection:
    """The consumers' ledger of applied event ids."""
    return database[PROCESSED_EVENTS]


def outbox_collections(database: AsyncDatabase) -> list[AsyncCollection]:
    """Collections whose documents carry events for the relay (hinted by their writers): the shares wherever
    they may be (one `shares` collection on MongoDB, its buckets on FerretDB; both named here because the
    worker is built before it knows the server, and a collection that does not exist costs its sweep one
    empty answer), and the GDPR export parts."""
    return [database[EXPORT_PARTS], database[SHARES], *share_buckets(database, ferretdb=True)]


# The relay's periodic sweep visits this many of those 258 collections per `outbox_sweep_seconds` (10 s),
# one at a time, a full round in ~170 s: on FerretDB 1.x a sweep decodes every document of what it visits,
# and one of all the shares ever stored held the relay's hinted passes up (435 ms at 600 shares, 3.75 s at
# 3,000); one bucket holds them up for a few ms. The sweep only catches a writer that died between its
# write and its hint.
OUTBOX_SWEEP_SLICE = 16


async def share_documents(database: AsyncDatabase, query: dict[str, Any]) -> list[dict[str, Any]]:
    """The share documents matching `query`, from every collection that holds them (checks and tooling)."""
    ferretdb = (await ServerCapabilities.detect(database)).ferretdb
    existing = set(await database.list_collection_names())
    return [document for collection in share_buckets(database, ferretdb) if collection.name in existing
            async for document in collection.find(query)]


def outbox_queues(database: AsyncDatabase) -> list[AsyncCollection]:
    """Collections whose documents only carry events: the relay deletes each once its events are on Kafka."""
    return [database[MongoClicks.collection_name]]


def outbox_swept_queues(database: AsyncDatabase) -> list[AsyncCollection]:
    """Queues of earlier releases, drained by the relay's sweeps (at start, then every sweep turn)."""
    return [database[MongoClicks.earlier_collection_name]]


INDEXES: dict[str, list[IndexModel]] = {
    "contents": [IndexModel([("tenant", ASCENDING), ("retired", ASCENDING), ("publish_at", DESCENDING)])],
    "comments": [IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING)])],
    PROCESSED_EVENTS: [IndexModel([("seen_at", ASCENDING)])],
    "connectors": [IndexModel([("tenant", ASCENDING), ("name", ASCENDING)], unique=True)],
}
# MongoDB only: one collection each there; on FerretDB they are buckets (adapters/links.py, sharing.py) that no
# index would serve (FerretDB 1.x pushes down only `_id`).
MONGODB_INDEXES: dict[str, list[IndexModel]] = {
    LINKS: [IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING)])],
    SHARES: [
        IndexModel([("tenant", ASCENDING), ("ambassador_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("tenant", ASCENDING), ("post_url", ASCENDING)]),
    ],
}


async def create_indexes(database: AsyncDatabase) -> None:
    """MongoDB uses these; FerretDB 1.x keeps them but pushes only `_id` filters down to SQLite."""
    for collection, indexes in INDEXES.items():
        await create_indexes_one_by_one(database[collection], indexes)  # FerretDB 1.24: see the base
    if not (await ServerCapabilities.detect(database)).ferretdb:
        for collection, indexes in MONGODB_INDEXES.items():
            await create_indexes_one_by_one(database[collection], indexes)


async def upgrade_documents(database: AsyncDatabase) -> None:
    """Shares written before shares had a `version` get version 1, so that their confirmation (a
    compare-and-set on the version) works. Matches nothing once done; a scan on FerretDB 1.x at start.
    On FerretDB, tracked links and shares written before their buckets move into them (`move_links`,
    `move_shares`, the shares after their version); subject claims of earlier releases move into the
    ambassador documents (`move_subject_claims`) and their shared contents' collections are dropped
    (`fill_shared` enters those shares again)."""
    await database[SHARES].update_many({"version": {"$exists": False}}, {"$set": {"version": 1}})
    ferretdb = (await ServerCapabilities.detect(database)).ferretdb
    await move_subject_claims(database, ferretdb)
    await drop_earlier_shared_contents(database)
    await move_links(database, ferretdb)
    await move_shares(database, ferretdb)
