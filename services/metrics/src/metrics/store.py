"""MongoDB storage of one generation of the KPI read model, and the pointer to the live generation.

A generation is a set of collections (`counters_g3`, `ambassadors_g3`, ...). The
rebuild fills a fresh generation from the topics and then moves the pointer, so
readers switch in one single-document write. Every query carries the tenant.
Query shapes are the simple ones FerretDB 1.x serves: find with filters,
update_one/bulk upserts with $inc/$set/$addToSet, delete_many.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from .aggregation import AMBASSADORS, CONTENTS, COUNTERS, ActivityWrite, ConditionalWrite, Position, admits
from .models import Dimension, Period

ACTIVITY = "activity"
CLAIMS = "claims"
GENERATIONS = "generations"
WATERMARKS = "_wm"
DUPLICATE_KEY = 11000
FIRST_GENERATION = 1
UPDATES_PER_COMMAND = 50
CLAIM_BUCKETS = 16


def _duplicate_key_errors(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The write errors of a command reply, all duplicate keys; any other error is a real failure."""
    errors = reply.get("writeErrors") or []
    for error in errors:
        if error.get("code") != DUPLICATE_KEY:
            raise OperationFailure(error.get("errmsg", "write failed"), error.get("code"), dict(reply))
    return errors


def _by_collection(writes: Sequence[ConditionalWrite]) -> dict[str, list[ConditionalWrite]]:
    grouped: dict[str, list[ConditionalWrite]] = defaultdict(list)
    for write in writes:
        grouped[write.collection].append(write)
    return grouped


def _guard(write: ConditionalWrite) -> dict[str, Any]:
    conditions = [{"$or": [{f"{WATERMARKS}.{partition}": {"$exists": False}},
                           {f"{WATERMARKS}.{partition}": {"$lt": floor}}]}
                  for partition, floor in write.floors.items()]
    return {"_id": write.doc_id, "$and": conditions}


def _update(write: ConditionalWrite) -> dict[str, Any]:
    fields = {**write.identity, **write.set,
              **{f"{WATERMARKS}.{partition}": mark for partition, mark in write.marks.items()}}
    update: dict[str, Any] = {"$set": fields}
    if write.inc:
        update["$inc"] = dict(write.inc)
    return update


class MongoMetricsStore:
    """The `MetricsStore` port on MongoDB / FerretDB, for one generation."""

    def __init__(self, database: AsyncDatabase, generation: int, guarded: bool = True):
        self.database = database
        self.generation = generation
        self.guarded = guarded

    def collection(self, name: str) -> AsyncCollection:
        return self.database[f"{name}_g{self.generation}"]

    async def ensure_indexes(self) -> None:
        counters = self.collection(COUNTERS)
        await counters.create_index([("tenant", ASCENDING), ("dimension", ASCENDING), ("value", ASCENDING),
                                     ("day", ASCENDING)], name="by_dimension_value_day")
        await counters.create_index([("tenant", ASCENDING), ("dimension", ASCENDING), ("day", ASCENDING)],
                                    name="by_dimension_day")
        await self.collection(ACTIVITY).create_index([("tenant", ASCENDING), ("day", ASCENDING)], name="by_day")
        await self.collection(ACTIVITY).create_index([("tenant", ASCENDING), ("ambassador_id", ASCENDING)],
                                                     name="by_ambassador")
        await self.collection(AMBASSADORS).create_index([("tenant", ASCENDING)], name="by_tenant")
        await self.collection(CONTENTS).create_index([("tenant", ASCENDING)], name="by_tenant")

    async def drop(self) -> None:
        for name in (COUNTERS, AMBASSADORS, CONTENTS, ACTIVITY, CLAIMS):
            await self.collection(name).drop()

    # --- writes of the consumer ---------------------------------------------------------

    async def claim(self, claims: Mapping[str, Position]) -> dict[str, Position]:
        """Claims live in a few bucket documents per (tenant, partition), read and written by _id.

        Copies of one fact always share a partition (same key), and Kafka gives a
        partition to one consumer at a time, so its buckets have a single writer.
        Buckets rather than one document per claim: FerretDB 1.x scans a whole
        collection to find even one _id, and a claim per event is a large collection.
        """
        wanted: dict[str, dict[str, tuple[str, Position]]] = defaultdict(dict)
        for key, position in claims.items():
            digest = hashlib.sha1(key.encode()).hexdigest()[:24]
            tenant = key.split("|", 1)[0]
            bucket = f"{tenant}|{position.partition}|{int(digest[:4], 16) % CLAIM_BUCKETS}"
            wanted[bucket][digest] = (key, position)
        stored = {document["_id"]: document.get("k", {}) async for document in
                  self.collection(CLAIMS).find({"_id": {"$in": list(wanted)}})}
        result: dict[str, Position] = {}
        updates = []
        for bucket, entries in wanted.items():
            new_fields = {}
            for digest, (key, position) in entries.items():
                offset = stored.get(bucket, {}).get(digest)
                if offset is None:
                    new_fields[f"k.{digest}"] = position.offset
                    offset = position.offset
                result[key] = Position(position.partition, offset)
            if new_fields:
                updates.append({"q": {"_id": bucket}, "u": {"$set": {"tenant": bucket.split("|", 1)[0], **new_fields}},
                                "upsert": True})
        if updates and not await self._update_all(CLAIMS, updates):
            raise OperationFailure("claim buckets were created concurrently; the batch will be retried")
        return result

    async def write_conditionally(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        if self.guarded:
            return await self._write_guarded(writes)
        return await self._write_checked(writes)

    async def _write_guarded(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        """The condition in each update's filter: safe even if two consumers wrote one partition at once."""
        refused: list[ConditionalWrite] = []
        for name, group in _by_collection(writes).items():
            updates = [{"q": _guard(w), "u": _update(w), "upsert": True} for w in group]
            # A failed guard on an existing document makes the upsert insert its _id again: duplicate key.
            if not await self._update_all(name, updates):
                # Which ones went through is not reliably reported (FerretDB 1.x), and need not be:
                # the caller reads the watermarks and re-sends only what a document does not hold.
                refused += group
        return refused

    async def _write_checked(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        """The condition checked on a read just before, then updates by _id alone.

        For FerretDB 1.x, whose updates with any condition besides _id scan the
        whole collection (3x slower at 200 documents, worse as it grows). Sound
        because Kafka gives each partition to one consumer at a time and each
        update raises only its own partitions' watermarks ($inc commutes).
        """
        watermarks = await self.read_watermarks(writes)
        admitted = [w for w in writes if admits(w, watermarks.get((w.collection, w.doc_id), {}))]
        for name, group in _by_collection(admitted).items():
            await self._update_all(name, [{"q": {"_id": w.doc_id}, "u": _update(w), "upsert": True} for w in group])
        return [w for w in writes if not admits(w, watermarks.get((w.collection, w.doc_id), {}))]

    async def _update_all(self, name: str, updates: list[dict[str, Any]]) -> bool:
        """One ordered `update` command; False when some update met a duplicate key.

        A raw command because FerretDB 1.x answers a failed bulk without the
        `nModified` field PyMongo's bulk API requires; in chunks, because it
        deadlocks on an update command of 100 or more matching statements.
        """
        clean = True
        for start in range(0, len(updates), UPDATES_PER_COMMAND):
            reply = await self.database.command({"update": self.collection(name).name, "ordered": True,
                                                 "updates": updates[start:start + UPDATES_PER_COMMAND]})
            clean = clean and not _duplicate_key_errors(reply)
        return clean

    async def read_watermarks(self, writes: Sequence[ConditionalWrite]) -> dict[tuple[str, str], dict[str, int]]:
        found: dict[tuple[str, str], dict[str, int]] = {}
        for name, group in _by_collection(writes).items():
            doc_ids = [w.doc_id for w in group]
            async for document in self.collection(name).find({"_id": {"$in": doc_ids}}, {WATERMARKS: 1}):
                found[(name, document["_id"])] = dict(document.get(WATERMARKS) or {})
        return found

    async def add_activity(self, rows: Sequence[ActivityWrite]) -> None:
        if not rows:
            return
        changes: list[dict[str, Any]] = []
        for row in rows:
            additions = {name: {"$each": sorted(values)} for name, values in
                         (("campaigns", row.campaigns), ("contents", row.contents), ("networks", row.networks))
                         if values}
            update: dict[str, Any] = {"$set": {"tenant": row.tenant, "ambassador_id": row.ambassador_id,
                                               "day": row.day}}
            if additions:
                update["$addToSet"] = additions
            changes.append({"q": {"_id": row.doc_id}, "u": update, "upsert": True})
        if not await self._update_all(ACTIVITY, changes):
            # Another writer created one of these days at the same moment: redo each (idempotent).
            for change in changes:
                await self.collection(ACTIVITY).update_one(change["q"], change["u"], upsert=True)

    async def erased_among(self, people: set[tuple[str, str]]) -> set[tuple[str, str]]:
        if not people:
            return set()
        ids = [f"{tenant}|{ambassador_id}" for tenant, ambassador_id in people]
        cursor = self.collection(AMBASSADORS).find({"_id": {"$in": ids}, "erased": True},
                                                   {"tenant": 1, "ambassador_id": 1})
        return {(document["tenant"], document["ambassador_id"]) async for document in cursor}

    async def erase_individual(self, tenant: str, ambassador_id: str) -> None:
        await self.collection(COUNTERS).delete_many({"tenant": tenant, "dimension": Dimension.AMBASSADOR.value,
                                                     "value": ambassador_id})
        await self.collection(ACTIVITY).delete_many({"tenant": tenant, "ambassador_id": ambassador_id})

    # --- reads of the API -----------------------------------------------------------------

    async def list_counters(self, tenant: str, dimension: Dimension, value: str | None,
                            period: Period) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"tenant": tenant, "dimension": dimension.value,
                                 "day": {"$gte": period.first_day, "$lte": period.last_day}}
        if value is not None:
            query["value"] = value
        cursor = self.collection(COUNTERS).find(query, {"value": 1, "day": 1, "c": 1})
        return [{"value": d["value"], "day": d["day"], "parts": d.get("c", {})} async for d in cursor]

    async def list_activity(self, tenant: str, period: Period) -> list[dict[str, Any]]:
        cursor = self.collection(ACTIVITY).find(
            {"tenant": tenant, "day": {"$gte": period.first_day, "$lte": period.last_day}}, {"_id": 0})
        return [document async for document in cursor]

    async def list_ambassadors(self, tenant: str) -> list[dict[str, Any]]:
        cursor = self.collection(AMBASSADORS).find({"tenant": tenant}, {"_id": 0, WATERMARKS: 0})
        return [document async for document in cursor]

    async def list_contents(self, tenant: str) -> list[dict[str, Any]]:
        cursor = self.collection(CONTENTS).find({"tenant": tenant}, {"_id": 0, WATERMARKS: 0})
        return [document async for document in cursor]


class Generations:
    """Which generation is live (a pointer document), and numbers for new ones."""

    def __init__(self, database: AsyncDatabase):
        self.collection = database[GENERATIONS]
        self.guarded = True

    async def detect_server(self) -> None:
        """Guards in update filters on MongoDB; read-checked writes on FerretDB (see `_write_checked`)."""
        info = await self.collection.database.client["admin"].command("buildInfo")
        self.guarded = not any(key.startswith("ferretdb") for key in info)

    async def current(self) -> int:
        document = await self.collection.find_one({"_id": "current"})
        return int(document["generation"]) if document else FIRST_GENERATION

    async def allocate(self) -> int:
        """A generation number never used before (the live one included)."""
        live = await self.current()
        document = await self.collection.find_one_and_update(
            {"_id": "allocated"}, {"$inc": {"last": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        number = int(document["last"])
        if number <= live:
            document = await self.collection.find_one_and_update(
                {"_id": "allocated"}, {"$max": {"last": live + 1}}, return_document=ReturnDocument.AFTER)
            number = int(document["last"])
        return number

    async def switch_to(self, generation: int) -> None:
        await self.collection.update_one({"_id": "current"}, {"$set": {"generation": generation}}, upsert=True)

    def store(self, generation: int) -> MongoMetricsStore:
        return MongoMetricsStore(self.collection.database, generation, self.guarded)
