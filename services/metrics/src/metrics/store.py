"""MongoDB / FerretDB storage of one generation of the KPI read model, and the live-generation pointer.

The only module that knows collections, document layout and operators. A
generation is a set of collections (`counters_g3`, `ambassadors_g3`, ...); the
rebuild fills a fresh one from the topics and then moves the pointer, so
readers switch in one single-document write. Every query carries the tenant
(in the filter, or in the `_id`, whose first segment is the tenant).

FerretDB 1.x tactics, each explained where it is used: watermark checks read
before an update by `_id` (`_write_checked`), chunked raw `update` commands
(`_update_all`), claim buckets (`claim`), and reads by bare `_id` lists.
Which server runs is detected once by the base (`Storage.capabilities`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from advocacy_common.repository import TENANT_FIELD, WATERMARK_FIELD, Storage

from .aggregation import (
    AmbassadorChange, AmbassadorKey, Change, ConditionalWrite, CounterKey, FactId, Increments, Position,
    Target, Watermarks, admits,
)
from .models import FIRST_GENERATION, ActivityDay, AmbassadorStatus, AmbassadorView, ContentView, CounterRow, Dimension, Period, Person

COUNTERS = "counters"
AMBASSADORS = "ambassadors"
CONTENTS = "contents"
ACTIVITY = "activity"
CLAIMS = "claims"
GENERATIONS = "generations"
PARTS = "c"  # counter documents keep their parts under `c.<part>`
DUPLICATE_KEY = 11000
CLAIM_BUCKETS = 16


# --- document layout ------------------------------------------------------------------

def _layout(target: Target) -> tuple[str, str, dict[str, Any]]:
    """The collection, `_id` and identity fields of a target's document."""
    if isinstance(target, CounterKey):
        return COUNTERS, f"{target.tenant}|{target.day}|{target.dimension.value}|{target.value}", {
            TENANT_FIELD: target.tenant, "day": target.day, "dimension": target.dimension.value,
            "value": target.value}
    if isinstance(target, AmbassadorKey):
        return AMBASSADORS, f"{target.tenant}|{target.ambassador_id}", {
            TENANT_FIELD: target.tenant, "ambassador_id": target.ambassador_id}
    return CONTENTS, f"{target.tenant}|{target.content_id}", {
        TENANT_FIELD: target.tenant, "content_id": target.content_id}


def _person_id(person: Person) -> str:
    return _layout(AmbassadorKey(person.tenant, person.ambassador_id))[1]


def _activity_id(row: ActivityDay) -> str:
    return f"{row.tenant}|{row.ambassador_id}|{row.day}"


def _changed_fields(change: Change) -> tuple[dict[str, int], dict[str, Any]]:
    """A change as ($inc, $set) fields."""
    if isinstance(change, Increments):
        return {f"{PARTS}.{name}": amount for name, amount in change.parts.items()}, {}
    if isinstance(change, AmbassadorChange):
        fields: dict[str, Any] = {}
        if change.status is not None:
            fields["status"] = change.status.value
        if change.profile is not None:
            fields.update(team_id=change.profile.team_id, networks=list(change.profile.networks),
                          leaderboard_opt_in=change.profile.leaderboard_opt_in)
        if change.erased:
            fields["erased"] = True
        return {}, fields
    return {}, {"campaign_id": change.campaign_id, "objective": change.objective, "topics": list(change.topics),
                "version": change.version}


def _update(write: ConditionalWrite) -> dict[str, Any]:
    _, _, identity = _layout(write.target)
    inc, fields = _changed_fields(write.change)
    update: dict[str, Any] = {"$set": {**identity, **fields, **{f"{WATERMARK_FIELD}.{partition}": mark
                                                                for partition, mark in write.marks.items()}}}
    if inc:
        update["$inc"] = inc
    return update


def _guard(write: ConditionalWrite) -> dict[str, Any]:
    conditions = [{"$or": [{f"{WATERMARK_FIELD}.{partition}": {"$exists": False}},
                           {f"{WATERMARK_FIELD}.{partition}": {"$lt": floor}}]}
                  for partition, floor in write.floors.items()]
    return {"_id": _layout(write.target)[1], "$and": conditions}


def _ambassador(document: Mapping[str, Any]) -> AmbassadorView:
    status = document.get("status")
    return AmbassadorView(document["ambassador_id"], AmbassadorStatus(status) if status else None,
                          document.get("team_id"), tuple(document.get("networks") or ()),
                          bool(document.get("leaderboard_opt_in")), bool(document.get("erased")))


def _content(document: Mapping[str, Any]) -> ContentView:
    return ContentView(document["content_id"], document.get("campaign_id"), document.get("objective", ""),
                       tuple(document.get("topics") or ()), int(document.get("version", 0)))


def _activity(document: Mapping[str, Any]) -> ActivityDay:
    return ActivityDay(document[TENANT_FIELD], document["ambassador_id"], document["day"],
                       frozenset(document.get("campaigns") or ()), frozenset(document.get("contents") or ()),
                       frozenset(document.get("networks") or ()))


def _duplicate_key_errors(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The write errors of a command reply, all duplicate keys; any other error is a real failure."""
    errors = reply.get("writeErrors") or []
    for error in errors:
        if error.get("code") != DUPLICATE_KEY:
            raise OperationFailure(error.get("errmsg", "write failed"), error.get("code"), dict(reply))
    return errors


def _by_collection(writes: Iterable[ConditionalWrite]) -> dict[str, list[ConditionalWrite]]:
    grouped: dict[str, list[ConditionalWrite]] = defaultdict(list)
    for write in writes:
        grouped[_layout(write.target)[0]].append(write)
    return grouped


# --- one generation -------------------------------------------------------------------

class MongoMetricsStore:
    """The `MetricsStore` port on MongoDB / FerretDB, for one generation."""

    def __init__(self, storage: Storage, generation: int):
        self.storage = storage
        self.database = storage.database
        self.generation = generation

    def collection(self, name: str) -> AsyncCollection:
        return self.database[f"{name}_g{self.generation}"]

    async def ensure_indexes(self) -> None:
        counters = self.collection(COUNTERS)
        await counters.create_index([(TENANT_FIELD, ASCENDING), ("dimension", ASCENDING), ("value", ASCENDING),
                                     ("day", ASCENDING)], name="by_dimension_value_day")
        await counters.create_index([(TENANT_FIELD, ASCENDING), ("dimension", ASCENDING), ("day", ASCENDING)],
                                    name="by_dimension_day")
        await self.collection(ACTIVITY).create_index([(TENANT_FIELD, ASCENDING), ("day", ASCENDING)], name="by_day")
        await self.collection(ACTIVITY).create_index([(TENANT_FIELD, ASCENDING), ("ambassador_id", ASCENDING)],
                                                     name="by_ambassador")
        await self.collection(AMBASSADORS).create_index([(TENANT_FIELD, ASCENDING)], name="by_tenant")
        await self.collection(CONTENTS).create_index([(TENANT_FIELD, ASCENDING)], name="by_tenant")

    async def drop(self) -> None:
        for name in (COUNTERS, AMBASSADORS, CONTENTS, ACTIVITY, CLAIMS):
            await self.collection(name).drop()

    # --- writes of the consumer ---------------------------------------------------------

    async def claim(self, claims: Mapping[FactId, Position]) -> dict[FactId, Position]:
        """Claims live in a few bucket documents per (tenant, partition), read and written by _id.

        Copies of one fact always share a partition (same key), and Kafka gives a
        partition to one consumer at a time, so its buckets have a single writer.
        Buckets rather than one document per claim: FerretDB 1.x scans a whole
        collection to find even one _id, and a claim per event is a large collection
        (MongoDB would serve one document per claim from its _id index as well).
        """
        wanted: dict[str, dict[str, tuple[FactId, Position]]] = defaultdict(dict)
        for fact, position in claims.items():
            digest = hashlib.sha1(f"{fact.tenant}|{fact.key}".encode()).hexdigest()[:24]
            bucket = f"{fact.tenant}|{position.partition}|{int(digest[:4], 16) % CLAIM_BUCKETS}"
            wanted[bucket][digest] = (fact, position)
        stored = {document["_id"]: document.get("k", {}) async for document in
                  self.collection(CLAIMS).find({"_id": {"$in": list(wanted)}})}
        result: dict[FactId, Position] = {}
        updates = []
        for bucket, entries in wanted.items():
            new_fields = {}
            for digest, (fact, position) in entries.items():
                offset = stored.get(bucket, {}).get(digest)
                if offset is None:
                    new_fields[f"k.{digest}"] = position.offset
                    offset = position.offset
                result[fact] = Position(position.partition, offset)
            if new_fields:
                tenant = next(iter(entries.values()))[0].tenant
                updates.append({"q": {"_id": bucket}, "u": {"$set": {TENANT_FIELD: tenant, **new_fields}},
                                "upsert": True})
        if updates and not await self._update_all(CLAIMS, updates):
            raise OperationFailure("claim buckets were created concurrently; the batch will be retried")
        return result

    async def write_conditionally(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        if self.storage.capabilities.ferretdb:
            return await self._write_checked(writes)
        return await self._write_guarded(writes)

    async def _write_guarded(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        """MongoDB: the condition in each update's filter, safe even if two consumers wrote one partition at once."""
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
        """FerretDB 1.x: the condition checked on a read just before, then updates by _id alone.

        FerretDB 1.x pushes only `_id` filters down to SQLite: an update with a
        watermark condition besides `_id` scans the whole collection (3x slower
        at 200 documents, worse as it grows), where MongoDB evaluates it on the
        document its `_id` index finds. Sound because Kafka gives each partition
        to one consumer at a time and each update raises only its own partitions'
        watermarks ($inc commutes).
        """
        watermarks = await self.read_watermarks([w.target for w in writes])
        admitted = [w for w in writes if admits(w, watermarks.get(w.target, {}))]
        for name, group in _by_collection(admitted).items():
            await self._update_all(name, [{"q": {"_id": _layout(w.target)[1]}, "u": _update(w), "upsert": True}
                                          for w in group])
        return [w for w in writes if not admits(w, watermarks.get(w.target, {}))]

    async def _update_all(self, name: str, updates: list[dict[str, Any]]) -> bool:
        """Ordered `update` commands; False when some update met a duplicate key.

        A raw command because FerretDB 1.x answers a failed bulk without the
        `nModified` field PyMongo's bulk API requires (MongoDB always sends it);
        in chunks of `max_update_statements`, because FerretDB 1.x deadlocks on
        an update command of 100 or more matching statements (MongoDB takes
        100,000 per command).
        """
        clean = True
        size = self.storage.capabilities.max_update_statements
        for start in range(0, len(updates), size):
            reply = await self.database.command({"update": self.collection(name).name, "ordered": True,
                                                 "updates": updates[start:start + size]})
            clean = clean and not _duplicate_key_errors(reply)
        return clean

    async def read_watermarks(self, targets: Sequence[Target]) -> dict[Target, Watermarks]:
        # A bare `_id` list: the one filter FerretDB 1.x serves without a scan (MongoDB: its _id index).
        ids: dict[str, dict[str, Target]] = defaultdict(dict)
        for target in targets:
            name, document_id, _ = _layout(target)
            ids[name][document_id] = target
        found: dict[Target, Watermarks] = {}
        for name, by_id in ids.items():
            async for document in self.collection(name).find({"_id": {"$in": list(by_id)}}, {WATERMARK_FIELD: 1}):
                found[by_id[document["_id"]]] = dict(document.get(WATERMARK_FIELD) or {})
        return found

    async def add_activity(self, rows: Sequence[ActivityDay]) -> None:
        if not rows:
            return
        changes: list[dict[str, Any]] = []
        for row in rows:
            additions = {name: {"$each": sorted(values)} for name, values in
                         (("campaigns", row.campaigns), ("contents", row.contents), ("networks", row.networks))
                         if values}
            update: dict[str, Any] = {"$set": {TENANT_FIELD: row.tenant, "ambassador_id": row.ambassador_id,
                                               "day": row.day}}
            if additions:
                update["$addToSet"] = additions
            changes.append({"q": {"_id": _activity_id(row)}, "u": update, "upsert": True})
        if not await self._update_all(ACTIVITY, changes):
            # Another writer created one of these days at the same moment: redo each (idempotent).
            for change in changes:
                await self.collection(ACTIVITY).update_one(change["q"], change["u"], upsert=True)

    async def erased_among(self, people: set[Person]) -> set[Person]:
        if not people:
            return set()
        # A bare `_id` list, the tombstone checked here: FerretDB 1.x pushes down only `_id` filters
        # (MongoDB would serve `erased` in the filter from the same _id lookup).
        cursor = self.collection(AMBASSADORS).find({"_id": {"$in": [_person_id(p) for p in people]}},
                                                   {TENANT_FIELD: 1, "ambassador_id": 1, "erased": 1})
        return {Person(document[TENANT_FIELD], document["ambassador_id"]) async for document in cursor
                if document.get("erased")}

    async def erase_individual(self, person: Person) -> None:
        await self.collection(COUNTERS).delete_many({TENANT_FIELD: person.tenant,
                                                     "dimension": Dimension.AMBASSADOR.value,
                                                     "value": person.ambassador_id})
        await self.collection(ACTIVITY).delete_many({TENANT_FIELD: person.tenant,
                                                     "ambassador_id": person.ambassador_id})

    # --- reads of the API -----------------------------------------------------------------

    async def list_counters(self, tenant: str, dimension: Dimension, value: str | None,
                            period: Period) -> list[CounterRow]:
        query: dict[str, Any] = {TENANT_FIELD: tenant, "dimension": dimension.value,
                                 "day": {"$gte": period.first_day, "$lte": period.last_day}}
        if value is not None:
            query["value"] = value
        cursor = self.collection(COUNTERS).find(query, {"value": 1, "day": 1, PARTS: 1})
        return [CounterRow(d["value"], d["day"], d.get(PARTS, {})) async for d in cursor]

    async def list_activity(self, tenant: str, period: Period) -> list[ActivityDay]:
        cursor = self.collection(ACTIVITY).find(
            {TENANT_FIELD: tenant, "day": {"$gte": period.first_day, "$lte": period.last_day}}, {"_id": 0})
        return [_activity(document) async for document in cursor]

    async def list_ambassadors(self, tenant: str) -> list[AmbassadorView]:
        cursor = self.collection(AMBASSADORS).find({TENANT_FIELD: tenant}, {"_id": 0, WATERMARK_FIELD: 0})
        return [_ambassador(document) async for document in cursor]

    async def list_contents(self, tenant: str) -> list[ContentView]:
        cursor = self.collection(CONTENTS).find({TENANT_FIELD: tenant}, {"_id": 0, WATERMARK_FIELD: 0})
        return [_content(document) async for document in cursor]


# --- the generations ------------------------------------------------------------------

class MongoGenerations:
    """The `Generations` port: a pointer document (`current`) and a counter (`allocated`)."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self.collection = storage.database[GENERATIONS]

    async def current(self) -> int:
        document = await self.collection.find_one({"_id": "current"})
        return int(document["generation"]) if document else FIRST_GENERATION

    async def allocate(self) -> int:
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
        return MongoMetricsStore(self.storage, generation)

    async def prepare(self, generation: int, *, empty: bool = False) -> MongoMetricsStore:
        store = self.store(generation)
        if empty:
            await store.drop()
        await store.ensure_indexes()
        return store
