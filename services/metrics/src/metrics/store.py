"""MongoDB storage of one generation of the KPI read model, and the pointer to the live generation.

A generation is a set of collections (`counters_g3`, `ambassadors_g3`, ...). The
rebuild fills a fresh generation from the topics and then moves the pointer, so
readers switch in one single-document write. Every query carries the tenant.
Query shapes are the simple ones FerretDB 1.x serves: find with filters,
update_one/bulk upserts with $inc/$set/$addToSet, delete_many.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from .aggregation import AMBASSADORS, CONTENTS, COUNTERS, ActivityWrite, ConditionalWrite, Position
from .models import Dimension, Period

ACTIVITY = "activity"
CLAIMS = "claims"
GENERATIONS = "generations"
WATERMARKS = "_wm"
DUPLICATE_KEY = 11000
FIRST_GENERATION = 1
UPDATES_PER_COMMAND = 50


def _duplicate_indexes(error: BulkWriteError) -> list[int]:
    """Indexes of the operations refused as duplicate keys; anything else is a real failure."""
    others = [e for e in error.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
    if others:
        raise error
    return [e["index"] for e in error.details.get("writeErrors", [])]


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

    def __init__(self, database: AsyncDatabase, generation: int):
        self.database = database
        self.generation = generation

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
        result = dict(claims)
        missing = list(claims)
        while missing:
            documents = [{"_id": key, "p": claims[key].partition, "o": claims[key].offset} for key in missing]
            try:
                await self.collection(CLAIMS).insert_many(documents, ordered=False)
                return result
            except BulkWriteError as error:
                _duplicate_indexes(error)
            # Read back what is stored: FerretDB may stop an unordered insert at its first duplicate.
            stored = {d["_id"]: Position(d["p"], d["o"])
                      async for d in self.collection(CLAIMS).find({"_id": {"$in": missing}})}
            result.update(stored)
            missing = [key for key in missing if key not in stored]
        return result

    async def write_conditionally(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        by_collection: dict[str, list[ConditionalWrite]] = defaultdict(list)
        for write in writes:
            by_collection[write.collection].append(write)
        refused: list[ConditionalWrite] = []
        for name, group in by_collection.items():
            updates = [{"q": _guard(w), "u": _update(w), "upsert": True} for w in group]
            # A failed guard on an existing document makes the upsert insert its _id again: duplicate key.
            if not await self._update_all(name, updates):
                # Which ones went through is not reliably reported (FerretDB 1.x), and need not be:
                # the caller reads the watermarks and re-sends only what a document does not hold.
                refused += group
        return refused

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
            errors = reply.get("writeErrors") or []
            for error in errors:
                if error.get("code") != DUPLICATE_KEY:
                    raise OperationFailure(error.get("errmsg", "update failed"), error.get("code"), reply)
            clean = clean and not errors
        return clean

    async def read_watermarks(self, writes: Sequence[ConditionalWrite]) -> dict[tuple[str, str], dict[str, int]]:
        ids: dict[str, list[str]] = defaultdict(list)
        for write in writes:
            ids[write.collection].append(write.doc_id)
        found: dict[tuple[str, str], dict[str, int]] = {}
        for name, doc_ids in ids.items():
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
        return MongoMetricsStore(self.collection.database, generation)
