"""MongoDB / FerretDB storage of one generation of the KPI read model, and the live-generation pointer.

The only module that knows collections, document layout and operators. A
generation is a set of collections (`counters_tenant_g3`, `ambassadors_g3`, ...); the
rebuild fills a fresh one from the topics and then moves the pointer, so
readers switch in one single-document write. Every query carries the tenant
(in the filter, or in the `_id`, whose first segment is the tenant).

What the worker writes per batch is inserts only, keyed by a deterministic `_id`:
one claim per fact and one slice per topic partition. Updates (the rolled-up
counters and activity days, the projections) happen once per touched document
per fold, or per rare ambassador/content event, so their cost follows the
number of documents touched, not the number of events.

FerretDB 1.x tactics, each explained where it is used: inserts where MongoDB
would take upserts as well (`claim`, `append_slices`), claims announced before
they are inserted so that a taken one is rarely read back (`_announce_claims`),
tombstones in a collection of their own (`erased_among`), watermark checks read
before an update by `_id` (`_write_checked`), chunked raw `update` commands
(`_update_all`), and reads by bare `_id` (`_by_ids`).
Which server runs is detected once by the base (`Storage.capabilities`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from advocacy_common.consuming import Delivery
from advocacy_common.gdpr_export import COLLECTION as EXPORT_PARTS, MongoExportParts, Sections
from advocacy_common.repository import TENANT_FIELD, WATERMARK_FIELD, Storage
from advocacy_common.subjects import StoredSubjectHolders

from .aggregation import (
    AmbassadorChange, AmbassadorKey, Change, ConditionalWrite, CounterKey, FactId, Increments, Position, Slice,
    SliceSpan, Target, Watermarks, activity_rows, admits, counter_rows,
)
from .models import (
    ACTIVITY_SETS, FIRST_GENERATION, ActivityDay, AmbassadorStatus, AmbassadorView, ContentView, CounterRow, Dimension,
    MembershipChange, Period, Person, Revisions, activity_view, activity_views, in_view,
)
from .recent_claims import RecentClaims, digest
from .turns import Turns

COUNTERS = "counters"
AMBASSADORS = "ambassadors"
CONTENTS = "contents"
ACTIVITY = "activity"  # the former layout, one document per person and day: read and erased, no longer written
ACTIVITY_DAYS = "activity_days"  # who shared, per tenant, day and view (the tenant, a campaign, content, network)
CLAIMS = "claims"
CLAIMING = "claiming"  # per partition: how far each worker process may have inserted claims (FerretDB 1.x)
TOMBSTONES = "tombstones"  # one bare `_id` per erased person (`erased_among`)
ANNOUNCED = "by"  # its field: `by.<process token>` = furthest offset announced
SLICES = "slices"
PROGRESS = "progress"
GENERATIONS = "generations"
ROSTERS = "rosters"  # per tenant, a number raised whenever who counts (opted in, erased, team, networks) changes
DATA_REVISION = "d"  # beside it, a number raised after each write of the tenant's figures (`data_changed`)
PARTS = "c"  # counter documents keep their parts under `c.<part>`
CLAIMED_AT = "at"  # a claim's stored first position, "<partition>|<offset>" (`_claimed_at`)
SLICE_ROWS = "rows"  # a slice's counters and activity rows, JSON in a binary value (`_slice_document`)
DUPLICATE_KEY = 11000
# Stored claims remembered per process (`RecentClaims`, 24 bytes each in flat arrays): the copies a relay
# re-publishes are then recognised without a write (an insert meeting duplicate keys costs ~10x a clean
# one on FerretDB 1.x). Between this many and twice this many of the latest are kept, in ~12.6 MB. The
# former dict of tuples kept 50,000 (each claim's objects pinned ~2-3 KB among a batch's freed ones:
# 313 MB peak for one worker at 1,000,000 events); see bench/README.md for what this one costs.
KNOWN_CLAIMS = 100_000
AMBASSADOR_BATCH = 500  # documents per reply when the api lists a tenant's projection (see `list_ambassadors`)
INSERT_CHUNK = 1000  # documents per `insert` command (MongoDB takes 100,000; kept modest for FerretDB's memory)


# --- document layout ------------------------------------------------------------------

def _counters(dimension: Dimension) -> str:
    """Rolled-up counters live in one collection per dimension (`counters_tenant_g3`, ...).

    FerretDB 1.x answers a filter on anything but `_id` by scanning the whole collection: with one
    collection, the tenant overview (a few dozen rows) scanned every row of every dimension, most of
    them the individual ones (days x ambassadors). Now a read scans only its dimension's rows. MongoDB
    serves the same filters from the indexes either way.
    """
    return f"{COUNTERS}_{dimension.value}"


def _layout(target: Target) -> tuple[str, str, dict[str, Any]]:
    """The collection, `_id` and identity fields of a target's document."""
    if isinstance(target, CounterKey):
        return _counters(target.dimension), f"{target.tenant}|{target.day}|{target.dimension.value}|{target.value}", {
            TENANT_FIELD: target.tenant, "day": target.day, "dimension": target.dimension.value,
            "value": target.value}
    if isinstance(target, AmbassadorKey):
        return AMBASSADORS, f"{target.tenant}|{target.ambassador_id}", {
            TENANT_FIELD: target.tenant, "ambassador_id": target.ambassador_id}
    return CONTENTS, f"{target.tenant}|{target.content_id}", {
        TENANT_FIELD: target.tenant, "content_id": target.content_id}


def _person_id(person: Person) -> str:
    return _layout(AmbassadorKey(person.tenant, person.ambassador_id))[1]


def _activity_day_id(tenant: str, day: str, dimension: Dimension, value: str) -> str:
    return f"{tenant}|{day}|{dimension.value}|{value}"


def _activity_days(document: Mapping[str, Any]) -> list[ActivityDay]:
    """A view's day as one activity row per person, carrying the view's value in its set (if it has one)."""
    name = ACTIVITY_SETS.get(Dimension(document["dimension"]))
    sets = {name: frozenset([document["value"]])} if name else {}
    return [ActivityDay(document[TENANT_FIELD], person, document["day"], **sets)
            for person in document.get("people") or ()]


def _changed_fields(change: Change) -> tuple[dict[str, int], dict[str, Any], list[dict[str, Any]]]:
    """A change as ($inc, $set, history entries to $push) fields."""
    if isinstance(change, Increments):
        return {f"{PARTS}.{name}": amount for name, amount in change.parts.items()}, {}, []
    if isinstance(change, AmbassadorChange):
        fields: dict[str, Any] = {}
        if change.status is not None:
            fields["status"] = change.status.value
        if change.profile is not None:
            fields.update(team_id=change.profile.team_id, networks=list(change.profile.networks),
                          leaderboard_opt_in=change.profile.leaderboard_opt_in,
                          leaderboard_name=change.profile.leaderboard_name)
        if change.erased:
            fields["erased"] = True
        return {}, fields, [_history_entry(entry) for entry in change.history]
    return {}, {"campaign_id": change.campaign_id, "objective": change.objective, "topics": list(change.topics),
                "version": change.version, "title": change.title}, []


def _history_entry(change: MembershipChange) -> dict[str, Any]:
    entry: dict[str, Any] = {"d": change.day, "s": change.status.value if change.status else None}
    if change.networks is not None:
        entry.update(t=change.team_id, n=list(change.networks))
    return entry


def _membership_change(entry: Mapping[str, Any]) -> MembershipChange:
    status = entry.get("s")
    return MembershipChange(entry["d"], AmbassadorStatus(status) if status else None, entry.get("t"),
                            tuple(entry["n"]) if "n" in entry else None)


def _update(write: ConditionalWrite) -> dict[str, Any]:
    _, _, identity = _layout(write.target)
    inc, fields, history = _changed_fields(write.change)
    update: dict[str, Any] = {"$set": {**identity, **fields, **{f"{WATERMARK_FIELD}.{partition}": mark
                                                                for partition, mark in write.marks.items()}}}
    if inc:
        update["$inc"] = inc
    if history:
        # Appended under the same watermark condition as the rest: each entry once, in offset order.
        update["$push"] = {"history": {"$each": history}}
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
                          bool(document.get("leaderboard_opt_in")), bool(document.get("erased")),
                          document.get("leaderboard_name"),
                          tuple(_membership_change(entry) for entry in document.get("history") or ()))


def _content(document: Mapping[str, Any]) -> ContentView:
    return ContentView(document["content_id"], document.get("campaign_id"), document.get("objective", ""),
                       tuple(document.get("topics") or ()), int(document.get("version", 0)), document.get("title"))


def _activity(document: Mapping[str, Any]) -> ActivityDay:
    return ActivityDay(document[TENANT_FIELD], document["ambassador_id"], document["day"],
                       frozenset(document.get("campaigns") or ()), frozenset(document.get("contents") or ()),
                       frozenset(document.get("networks") or ()))


def _slice_document(piece: Slice) -> dict[str, Any]:
    """A slice as one document whose rows are one JSON text in a binary field.

    FerretDB 1.x converts every value of a document between BSON and PostgreSQL's jsonb, and
    evaluates an `$in` by decoding every document: rows of small subdocuments (~170 counters of
    a batch's partition, ~2,000 values) made a slice's insert, its read at the fold and its
    delete ~50 ms of database CPU per 1,000 events; as one binary value they cost ~5 ms
    (measured on the PostgreSQL backend, bench/README.md). MongoDB stores the bytes as they are;
    nothing ever queries inside a slice, which only the worker and the API's reads decode.
    """
    rows = {"counters": [[key.tenant, key.day, key.dimension.value, key.value, dict(parts)]
                         for key, parts in piece.counters.items()],
            "activity": [[row.tenant, row.ambassador_id, row.day, sorted(row.campaigns), sorted(row.contents),
                          sorted(row.networks)] for row in piece.activity]}
    return {"_id": _slice_id(piece.partition, piece.first), "p": piece.partition, "first": piece.first,
            "last": piece.last, SLICE_ROWS: Binary(json.dumps(rows, separators=(",", ":")).encode())}


def _claimed_at(position: Position) -> str:
    """A claim's first position as one string value: FerretDB 1.x's cost of an insert follows the number of
    values converted per document; `_id` and this one (no tenant field: the `_id` starts with the tenant)
    made the claims insert ~30 % cheaper than `_id`, tenant, partition and offset (bench/README.md)."""
    return f"{position.partition}|{position.offset}"


def _claim_position(document: Mapping[str, Any]) -> Position:
    if CLAIMED_AT in document:
        partition, offset = document[CLAIMED_AT].rsplit("|", 1)
        return Position(partition, int(offset))
    return Position(document["p"], int(document["o"]))  # written by an earlier release


def _slice_id(partition: str, first: int) -> str:
    return f"{partition}|{first}"


def _slice(document: Mapping[str, Any]) -> Slice:
    if SLICE_ROWS in document:
        rows = json.loads(document[SLICE_ROWS])
        counters = {CounterKey(t, d, Dimension(k), v): parts for t, d, k, v, parts in rows["counters"]}
        activity = tuple(ActivityDay(t, a, d, frozenset(campaigns), frozenset(contents), frozenset(networks))
                         for t, a, d, campaigns, contents, networks in rows["activity"])
        return Slice(document["p"], int(document["first"]), int(document["last"]), counters, activity)
    # Written by an earlier release (rows of subdocuments): still folded and read as they are.
    counters = {CounterKey(row["t"], row["d"], Dimension(row["k"]), row["v"]): row.get(PARTS, {})
                for row in document.get("counters") or ()}
    legacy = tuple(ActivityDay(row["t"], row["a"], row["d"], frozenset(row.get("campaigns") or ()),
                               frozenset(row.get("contents") or ()), frozenset(row.get("networks") or ()))
                   for row in document.get("activity") or ())
    return Slice(document["p"], int(document["first"]), int(document["last"]), counters, legacy)


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

class MongoMetricsStore(StoredSubjectHolders):
    # GDPR export parts live outside the generations (one collection of the database), so that a
    # rebuilding generation replaying a recent request finds the part written and writes nothing.
    event_source = "/metrics"
    """The `MetricsStore` port on MongoDB / FerretDB, for one generation."""

    def __init__(self, storage: Storage, generation: int):
        self.storage = storage
        self.database = storage.database
        self.generation = generation
        self._known_claims = RecentClaims(KNOWN_CLAIMS)
        # This process's claim announcements (FerretDB 1.x, `_announce_claims`): its own key, and per
        # partition the furthest offset announced; and the slices' progress last read per partition.
        self._token = uuid.uuid4().hex
        self._announced: dict[str, int] = {}
        self._progress_seen: dict[str, int] = {}
        self._erased: set[Person] = set()  # tombstones seen (never lifted)
        self._tombstones_complete = False  # `_copy_tombstones` done

    def collection(self, name: str) -> AsyncCollection:
        return self.database[f"{name}_g{self.generation}"]

    async def write(self, delivery: Delivery, service: str, sections: Sections, now: datetime) -> bool:
        return await MongoExportParts(self.database[EXPORT_PARTS], self.event_source).write(delivery, service, sections,
                                                                                      now)

    async def ensure_indexes(self) -> None:
        for dimension in Dimension:
            counters = self.collection(_counters(dimension))
            await counters.create_index([(TENANT_FIELD, ASCENDING), ("dimension", ASCENDING), ("value", ASCENDING),
                                         ("day", ASCENDING)], name="by_dimension_value_day")
            await counters.create_index([(TENANT_FIELD, ASCENDING), ("dimension", ASCENDING), ("day", ASCENDING)],
                                        name="by_dimension_day")
        await self.collection(ACTIVITY).create_index([(TENANT_FIELD, ASCENDING), ("day", ASCENDING)], name="by_day")
        await self.collection(ACTIVITY).create_index([(TENANT_FIELD, ASCENDING), ("ambassador_id", ASCENDING)],
                                                     name="by_ambassador")
        await self.collection(ACTIVITY_DAYS).create_index(
            [(TENANT_FIELD, ASCENDING), ("dimension", ASCENDING), ("value", ASCENDING), ("day", ASCENDING)],
            name="by_view_day")
        await self.collection(AMBASSADORS).create_index([(TENANT_FIELD, ASCENDING)], name="by_tenant")
        await self.collection(CONTENTS).create_index([(TENANT_FIELD, ASCENDING)], name="by_tenant")
        await self.collection(SLICES).create_index([("p", ASCENDING)], name="by_partition")

    async def drop(self) -> None:
        for name in (COUNTERS, *map(_counters, Dimension), AMBASSADORS, CONTENTS, ACTIVITY, ACTIVITY_DAYS, CLAIMS,
                     CLAIMING, SLICES, PROGRESS, ROSTERS, TOMBSTONES):
            await self.collection(name).drop()

    # --- writes of the consumer ---------------------------------------------------------

    async def claim(self, claims: Mapping[FactId, Position]) -> dict[FactId, Position]:
        """One small document per fact, `_id` = tenant and fact, inserted unordered: a taken `_id` is
        a fact claimed before.

        FerretDB 1.x: an insert by `_id` costs the same at any collection size, while an
        update (even by bare `_id`) grows with the collection and the document; so no
        upserts and no bucket documents. MongoDB: the same inserts go through the `_id`
        index; an upsert per claim would be as cheap there but is not needed.

        A stored claim never changes, so the claims this process wrote or read are kept
        (`_known_claims`, the most recent ones): a copy published close to its original is
        recognised without a write, which on FerretDB 1.x matters twice, as an insert
        command meeting duplicate keys costs several times one without (measured here).

        What a taken claim holds is read back by `_id` on MongoDB (its `_id` index), and on
        FerretDB 1.x only where it may be this very delivery's (`_announce_claims`).
        """
        result: dict[FactId, Position] = {}
        facts: list[FactId] = []
        keys: list[tuple[int, int]] = []
        documents: list[dict[str, Any]] = []
        for fact, position in claims.items():
            claim_id = f"{fact.tenant}|{fact.key}"
            key = digest(claim_id)
            known = self._known_claims.get(key)
            if known is not None:
                result[fact] = known
            else:
                facts.append(fact)
                keys.append(key)
                documents.append({"_id": claim_id, CLAIMED_AT: _claimed_at(position)})
        if not facts:
            return result
        positions = [claims[fact] for fact in facts]
        announced = await self._announce_claims(positions) if self.storage.capabilities.ferretdb else None
        taken = await self._insert_new(CLAIMS, documents)
        doubtful = taken if announced is None else await self._possibly_own(taken, positions, announced)
        stored = await self._by_ids(CLAIMS, [documents[number]["_id"] for number in doubtful])
        for number, fact in enumerate(facts):
            result[fact] = positions[number]
        for number in taken:
            result[facts[number]] = RecentClaims.ELSEWHERE
        for number in doubtful:
            document = stored.get(documents[number]["_id"])
            if document is None:  # claims are never deleted: an inconsistent reply, retry the batch
                raise OperationFailure(f"claim {documents[number]['_id']} was taken but cannot be read")
            result[facts[number]] = _claim_position(document)
        for number, fact in enumerate(facts):
            self._known_claims.put(keys[number], result[fact])
        return result

    async def _announce_claims(self, positions: Sequence[Position]) -> dict[str, int]:
        """FerretDB 1.x: before inserting claims, record how far this process may have claimed in each
        partition; returns how far it had before. `claiming_gN` holds, per partition, each process's
        furthest announced offset (`by.<token>`).

        Why: a claim whose `_id` is taken must be told apart: stored by this very delivery (an
        attempt that crashed, or a consumer that had the partition before, inserted it and
        did not get to its slice) or a copy of a fact seen earlier. Reading the stored claim by
        `_id` is a sequential scan of every claim on FerretDB 1.x's PostgreSQL backend (~0.7 us per
        stored claim: ~16 ms of database time per 1,000 events at 1,000,000 events, and growing).
        A claim is only ever inserted after its offset was announced, so a taken claim at an
        offset beyond every announcement but this one cannot be this delivery's: it is a copy,
        decided without a read. Only offsets some earlier attempt reached (after a crash or a
        rebalance: a batch or two) are read back. One small update per batch (one statement per
        partition of a small collection) instead. MongoDB reads taken claims by its `_id` index.
        """
        furthest: dict[str, int] = {}
        for partition, offset in positions:
            if offset > furthest.get(partition, -1):
                furthest[partition] = offset
        before = dict(self._announced)
        raise_to = {p: o for p, o in furthest.items() if o > before.get(p, -1)}
        if raise_to:
            updates = [{"q": {"_id": partition}, "u": {"$max": {f"{ANNOUNCED}.{self._token}": offset}}, "upsert": True}
                       for partition, offset in sorted(raise_to.items())]
            await self._upsert_all(CLAIMING, updates)  # `$max`: idempotent
            self._announced.update(raise_to)
        return before

    async def _possibly_own(self, taken: Sequence[int], positions: Sequence[Position],
                            announced_before: Mapping[str, int]) -> list[int]:
        """Of the taken claims (numbers in `positions`), those an earlier attempt may have stored at this
        very position: at an offset up to what another process announced (read after the insert, so an
        attempt running at the same moment is seen) or this one did before this batch."""
        if not taken:
            return []
        partitions = sorted({positions[number].partition for number in taken})
        reached = dict(announced_before)
        stale: dict[str, list[str]] = {}
        async for document in self.collection(CLAIMING).find({"_id": {"$in": partitions}}):
            for token, offset in (document.get(ANNOUNCED) or {}).items():
                if token == self._token:
                    continue
                if offset <= self._progress_seen.get(document["_id"], -1):
                    # Below the slices' progress: those offsets are never claimed again, so this entry
                    # decides nothing any more (a process that has stopped, or restarted under a new token).
                    stale.setdefault(document["_id"], []).append(token)
                reached[document["_id"]] = max(reached.get(document["_id"], -1), int(offset))
        for partition, tokens in stale.items():
            await self.collection(CLAIMING).update_one(
                {"_id": partition}, {"$unset": {f"{ANNOUNCED}.{token}": "" for token in tokens}})
        return [number for number in taken
                if positions[number].offset <= reached.get(positions[number].partition, -1)]

    async def _insert_new(self, name: str, documents: Sequence[dict[str, Any]]) -> list[int]:
        """Unordered raw `insert` commands; the positions (in `documents`) of those whose `_id` is taken.

        A raw command, like `_update_all`, to read every write error of the reply
        whatever the server sends with it.
        """
        taken: list[int] = []
        for start in range(0, len(documents), INSERT_CHUNK):
            reply = await self.database.command({"insert": self.collection(name).name, "ordered": False,
                                                 "documents": list(documents[start:start + INSERT_CHUNK])})
            taken += [start + int(error["index"]) for error in _duplicate_key_errors(reply)]
        return sorted(taken)

    async def _by_ids(self, name: str, ids: Sequence[str],
                      projection: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Documents of a growing collection by `_id`.

        FerretDB 1.x pushes down `_id` equality but not `$in` (measured: 50 `find_one`
        by `_id` on 20,000 documents take what one `$in` of 500 ids takes a hundredth
        of), so it gets concurrent `find_one`s (reads are not serialised by our proxy);
        MongoDB gets one `$in`, served by its `_id` index.
        """
        if not ids:
            return {}
        collection = self.collection(name)
        if self.storage.capabilities.ferretdb:
            found = await asyncio.gather(*(collection.find_one({"_id": i}, projection) for i in ids))
            return {document["_id"]: document for document in found if document is not None}
        return {document["_id"]: document async for document in collection.find({"_id": {"$in": list(ids)}},
                                                                                 projection)}

    # --- slices -------------------------------------------------------------------------

    async def append_slices(self, slices: Sequence[Slice]) -> list[SliceSpan]:
        """Inserts, `_id` = partition and first offset: a taken `_id` answers with the stored span.

        One insert per partition and batch whatever the number of events (FerretDB 1.x and
        MongoDB alike: a new document by `_id`, no read of what is stored).
        """
        documents = [_slice_document(piece) for piece in slices]
        taken = await self._insert_new(SLICES, documents)
        stored = await self._by_ids(SLICES, [documents[number]["_id"] for number in taken],
                                    {"p": 1, "first": 1, "last": 1})
        spans = []
        for number in taken:
            document = stored.get(documents[number]["_id"])
            if document is None:
                # Folded and deleted since the insert failed (another consumer that had the partition):
                # the progress has passed it now, so the retried batch skips those offsets.
                raise OperationFailure(f"slice {documents[number]['_id']} was folded meanwhile; retry the batch")
            spans.append(SliceSpan(document["p"], int(document["first"]), int(document["last"])))
        return spans

    async def slice_progress(self, partitions: Sequence[str]) -> dict[str, int]:
        # One document per partition: a small collection, a scan is fine on FerretDB 1.x (MongoDB: _id index).
        cursor = self.collection(PROGRESS).find({"_id": {"$in": list(partitions)}})
        progress = {document["_id"]: int(document["last"]) async for document in cursor}
        self._progress_seen.update(progress)
        return progress

    async def raise_progress(self, partition: str, last: int) -> None:
        # Only after a redelivery and once per partition and fold: an update is affordable here.
        await self.collection(PROGRESS).update_one({"_id": partition}, {"$max": {"last": last}}, upsert=True)

    async def pending_slices(self, partitions: Sequence[str] | None) -> list[Slice]:
        # Few documents (folds keep them few): FerretDB 1.x scans them, MongoDB uses `by_partition`.
        query = {} if partitions is None else {"p": {"$in": list(partitions)}}
        return [_slice(document) async for document in self.collection(SLICES).find(query)]

    async def delete_slices(self, spans: Sequence[SliceSpan]) -> None:
        ids = [_slice_id(span.partition, span.first) for span in spans]
        for start in range(0, len(ids), INSERT_CHUNK):
            await self.collection(SLICES).delete_many({"_id": {"$in": ids[start:start + INSERT_CHUNK]}})

    async def write_conditionally(self, writes: Sequence[ConditionalWrite]) -> list[ConditionalWrite]:
        erasures = [write.target for write in writes if isinstance(write.change, AmbassadorChange)
                    and write.change.erased]
        if erasures:
            # Before the projection's tombstone: whoever reads `tombstones_gN` (`erased_among`) then sees every
            # erasure the projection shows. Inserts by `_id`, a repeated one fails alone.
            await self._insert_new(TOMBSTONES, [{"_id": _layout(target)[1]} for target in erasures])
        if self.storage.capabilities.ferretdb:
            refused = await self._write_checked(writes)
        else:
            refused = await self._write_guarded(writes)
        await self._roster_changed({w.target.tenant for w in writes if isinstance(w.target, AmbassadorKey)})
        return refused

    async def _roster_changed(self, tenants: Iterable[str]) -> None:
        """Raise the tenants' roster revision, after the change itself is written.

        The API keeps computed reports a moment (service.MetricsQueries) under a key holding this
        revision, so an opt-in, an opt-out or an erasure shows in every report at once, while the
        counters (many writes a second) show within the freshness window. Rare: ambassador events
        only. A redelivery raises it again, which only costs one recomputation.
        """
        for tenant in sorted(tenants):
            await self.collection(ROSTERS).update_one({"_id": tenant}, {"$inc": {"r": 1}}, upsert=True)

    async def roster_revision(self, tenant: str) -> int:
        return (await self.revisions(tenant)).roster

    async def revisions(self, tenant: str) -> Revisions:
        # One small document by bare `_id` (FerretDB 1.x: the one filter pushed down; MongoDB: _id index).
        document = await self.collection(ROSTERS).find_one({"_id": tenant})
        return Revisions(int(document.get("r", 0)), int(document.get(DATA_REVISION, 0))) if document \
            else Revisions(0, 0)

    async def data_changed(self, tenants: Iterable[str]) -> None:
        """Raise the tenants' data revision (`d`, beside the roster's `r`), after their figures were written.

        The API recomputes a kept report only when this moved (service.MetricsQueries): a dashboard over
        figures nobody adds to costs no database work per window. One `update` command for all the
        tenants of a batch (in chunks: FerretDB 1.x deadlocks on 100 statements or more per command).
        """
        updates = [{"q": {"_id": tenant}, "u": {"$inc": {DATA_REVISION: 1}}, "upsert": True}
                   for tenant in sorted(set(tenants))]
        if updates:
            await self._upsert_all(ROSTERS, updates)  # a raise applied twice only costs one recomputation

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

    async def _upsert_all(self, name: str, updates: list[dict[str, Any]]) -> None:
        """`_update_all` of upserts that may be applied twice: when one met a duplicate key (another writer
        created its document at the same moment), each is redone on its own, once the document exists."""
        if not await self._update_all(name, updates):
            for update in updates:
                await self.collection(name).update_one(update["q"], update["u"], upsert=True)

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
        # One `$in` per collection. FerretDB 1.x pushes `$in` down on neither backend: it is one pass over
        # the collection, decoded in Go (measured: 1.8 s for 50 ids in 10,000 documents on PostgreSQL). One
        # `find_one` per id would be a scan each on PostgreSQL, which loses from a few dozen ids on, and a
        # fold reads hundreds; the fold schedule keeps this cost to a share of the worker's time, and reads
        # add pending slices, so a slower fold delays no KPI. MongoDB serves it from the `_id` index.
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
        """One document per tenant, day and view (the tenant, each campaign, content item and network) holding
        who shared that day in it: a report reads one small document per day of its period, not one per
        person and day (FerretDB 1.x ships and decodes every matching document; on the PostgreSQL backend that,
        not the scan, is the cost: 10,736 person-days of benchmark 4 took 2 s, their 90 tenant days 0.15 s).
        A union of the days' people is exact for any period. `$addToSet`: folding a slice twice is harmless."""
        if not rows:
            return
        people: dict[tuple[str, str, Dimension, str], set[str]] = defaultdict(set)
        for row in rows:
            for dimension, value in activity_views(row):
                people[(row.tenant, row.day, dimension, value)].add(row.ambassador_id)
        changes = [{"q": {"_id": _activity_day_id(tenant, day, dimension, value)},
                    "u": {"$set": {TENANT_FIELD: tenant, "day": day, "dimension": dimension.value, "value": value},
                          "$addToSet": {"people": {"$each": sorted(who)}}}, "upsert": True}
                   for (tenant, day, dimension, value), who in sorted(people.items())]
        await self._upsert_all(ACTIVITY_DAYS, changes)  # `$set` and `$addToSet`: idempotent

    async def erased_among(self, people: set[Person]) -> set[Person]:
        """Tombstones are never lifted, so each one seen is kept (`_erased`); the others are looked up in
        `tombstones_gN`, one bare `_id` per erased person: FerretDB 1.x pushes `$in` down on neither
        backend and ships every document it looks at, which for the projection (`ambassadors_gN`, with each
        person's history) was ~9 ms of database time per 1,000 events with 30 people, and would grow with
        the roster; the tombstones are few (erasures). MongoDB serves the same `$in` from the `_id` index."""
        unknown = people - self._erased
        if unknown:
            if not self._tombstones_complete:
                await self._copy_tombstones()
            ids = {_person_id(person): person for person in unknown}
            cursor = self.collection(TOMBSTONES).find({"_id": {"$in": list(ids)}})
            self._erased.update([ids[document["_id"]] async for document in cursor])
        return people & self._erased

    async def _copy_tombstones(self) -> None:
        """Once per process: the erasures of a generation written before `tombstones_gN` existed (only in
        the projection then) are copied there. A release writing tombstones only in the projection must not
        run at the same time (a rolling upgrade of the workers: stop the old ones first)."""
        cursor = self.collection(AMBASSADORS).find({"erased": True}, {"_id": 1})
        await self._insert_new(TOMBSTONES, [{"_id": document["_id"]} async for document in cursor])
        self._tombstones_complete = True

    async def erase_individual(self, person: Person) -> None:
        await self.collection(_counters(Dimension.AMBASSADOR)).delete_many({TENANT_FIELD: person.tenant,
                                                     "dimension": Dimension.AMBASSADOR.value,
                                                     "value": person.ambassador_id})
        await self.collection(ACTIVITY).delete_many({TENANT_FIELD: person.tenant,
                                                     "ambassador_id": person.ambassador_id})
        await self.collection(ACTIVITY_DAYS).update_many({TENANT_FIELD: person.tenant, "people": person.ambassador_id},
                                                         {"$pull": {"people": person.ambassador_id}})
        # Pending slices keep no trace of the person either (rare: a read of the few pending slices,
        # one rewrite of each that names the person).
        for piece in await self.pending_slices(None):
            if person in piece.people:
                document = _slice_document(piece.without(person))
                await self.collection(SLICES).update_one(
                    {"_id": document["_id"]}, {"$set": {SLICE_ROWS: document[SLICE_ROWS]},
                                               # an earlier release's rows go with the person in them
                                               "$unset": {"counters": "", "activity": ""}})
        await self._roster_changed([person.tenant])  # their activity days are gone: the active counts change

    # --- reads of the API -----------------------------------------------------------------

    async def list_counters(self, tenant: str, dimension: Dimension, value: str | None,
                            period: Period) -> list[CounterRow]:
        """Rolled-up rows (read after the pending slices, see `counter_rows`) plus the slices' rows."""
        slices = await self.pending_slices(None)
        query: dict[str, Any] = {TENANT_FIELD: tenant, "dimension": dimension.value,
                                 "day": {"$gte": period.first_day, "$lte": period.last_day}}
        if value is not None:
            query["value"] = value
        cursor = self.collection(_counters(dimension)).find(query, {"value": 1, "day": 1, PARTS: 1, WATERMARK_FIELD: 1})
        rolled = [(CounterKey(tenant, d["day"], dimension, d["value"]), d.get(PARTS, {}), d.get(WATERMARK_FIELD) or {})
                  async for d in cursor]

        def wanted(key: CounterKey) -> bool:
            return key.tenant == tenant and key.dimension is dimension and period.contains(key.day) \
                and (value is None or key.value == value)

        return counter_rows(rolled, slices, wanted)

    async def list_activity(self, tenant: str, period: Period, dimension: Dimension | None = None,
                            value: str | None = None) -> list[ActivityDay]:
        slices = await self.pending_slices(None)
        query: dict[str, Any] = {TENANT_FIELD: tenant, "day": {"$gte": period.first_day, "$lte": period.last_day}}
        if dimension is not None:  # else every view, joined back into whole rows (an export of the person)
            view = activity_view(dimension)
            query["dimension"] = view.value
            if value is not None and view is not Dimension.TENANT:
                query["value"] = value
        cursor = self.collection(ACTIVITY_DAYS).find(query, {"_id": 0, TENANT_FIELD: 1, "day": 1, "dimension": 1,
                                                             "value": 1, "people": 1})
        rolled: list[ActivityDay] = []
        turns = Turns()  # ~11,000 rows for a 90-day report: the api's other requests go on meanwhile
        async for document in cursor:
            rolled += _activity_days(document)
            await turns.take()
        # A generation written before the per-day layout (empty in any generation filled since: a rebuild
        # moves one to the new layout and makes this read free).
        legacy = self.collection(ACTIVITY).find({TENANT_FIELD: tenant, "day": query["day"]}, {"_id": 0})
        older = [row async for document in legacy if in_view(row := _activity(document), dimension, value)]

        def wanted(row: ActivityDay) -> bool:
            return row.tenant == tenant and period.contains(row.day) and in_view(row, dimension, value)

        one_value = dimension is not None and (value is not None or activity_view(dimension) is Dimension.TENANT)
        if one_value and not older and not any(wanted(row) for piece in slices for row in piece.activity):
            # One view value's documents hold each person once per day (one `_id` per day, `$addToSet`):
            # nothing to join. Joining them anyway was the api's longest stretch of a 90-day report.
            return rolled
        return activity_rows([*rolled, *older], slices, wanted)

    async def list_ambassadors(self, tenant: str) -> list[AmbassadorView]:
        # Batches of 500: a reply is decoded in one go, with the event loop held (2,000 people and their
        # histories took ~10 ms in one reply); a few more round trips, once per roster revision and 30 s.
        cursor = self.collection(AMBASSADORS).find({TENANT_FIELD: tenant}, {"_id": 0, WATERMARK_FIELD: 0},
                                                   batch_size=AMBASSADOR_BATCH)
        found: list[AmbassadorView] = []
        turns = Turns()
        async for document in cursor:
            found.append(_ambassador(document))
            await turns.take()
        return found

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
