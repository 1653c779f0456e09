"""The store's exactly-once primitives on the real database, with both write tactics, and two clients at once."""

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from advocacy_common.mongo import create_client
from advocacy_common.repository import TENANT_FIELD, ServerCapabilities, Storage
from metrics.aggregation import (
    AmbassadorChange, AmbassadorKey, CounterKey, FactId, Fragment, Increments, Position, Slice, above_watermarks,
    plan_writes,
)
from metrics.handlers import apply_exactly_once, fold_slices
from metrics.models import ActivityDay, Dimension, Period, Person
from metrics.recent_claims import RecentClaims
from metrics.store import (
    ACTIVITY, ACTIVITY_DAYS, AMBASSADORS, ANNOUNCED, CLAIMING, TOMBSTONES, MongoGenerations, MongoMetricsStore,
)
from metrics_testkit import BASE_DAY

pytestmark = pytest.mark.integration
DAY = BASE_DAY.date()
TOTAL = CounterKey("t", DAY.isoformat(), Dimension.TENANT, "all")
# The two tactics of `write_conditionally`: the watermark condition in the update filter (MongoDB) or
# checked on a read just before an update by _id (FerretDB 1.x); both run here on whichever server is up.
TACTICS = {"condition-in-filter": False, "read-then-update-by-id": True}


def fragment(offset: int, partition: str = "advocacy_share_0", shares: int = 1, target: CounterKey = TOTAL) -> Fragment:
    return Fragment(target, Position(partition, offset), Increments({"shares": shares}))


async def storage_with_tactic(database, ferretdb_tactic: bool) -> Storage:
    storage = await Storage.open(database, "test-cursor-key")
    capabilities = ServerCapabilities(ferretdb=ferretdb_tactic, version=storage.capabilities.version)
    return dataclasses.replace(storage, capabilities=capabilities)


async def plain_store(infrastructure, unique_db_name) -> tuple:
    """A client and a store of generation 1 in a fresh database, the server's own tactics."""
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    return client, MongoMetricsStore(await Storage.open(client[unique_db_name("metrics")], "test-cursor-key"), 1)


async def shares_of(store: MongoMetricsStore, target: CounterKey = TOTAL) -> int:
    rows = await store.list_counters(target.tenant, target.dimension, target.value, Period(DAY, DAY))
    return rows[0].parts["shares"] if rows else 0


@pytest.mark.parametrize("ferretdb_tactic", TACTICS.values(), ids=TACTICS.keys())
async def test_redelivered_batch_with_other_boundaries_counts_each_event_once(infrastructure, unique_db_name,
                                                                           ferretdb_tactic):
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    store = MongoMetricsStore(await storage_with_tactic(client[unique_db_name("metrics")], ferretdb_tactic), 1)
    try:
        await apply_exactly_once(store, [fragment(n) for n in range(0, 5)])  # offsets 0-4 applied
        refused = await store.write_conditionally(plan_writes([fragment(n) for n in range(3, 8)]))
        assert len(refused) == 1  # 3 and 4 are already in: the whole write is refused...
        await apply_exactly_once(store, [fragment(n) for n in range(3, 8)]  # ...and only 5-7 are added
                                 + [fragment(0, "advocacy_engagement_1", shares=10)])
        assert await shares_of(store) == 8 + 10
    finally:
        await client.close()


async def test_claims_keep_the_first_position_of_a_fact(infrastructure, unique_db_name):
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    generations = MongoGenerations(await Storage.open(client[unique_db_name("metrics")], "test-cursor-key"))
    store = await generations.prepare(await generations.current())
    s1, s2, s3 = (FactId("t", f"share:s{n}") for n in (1, 2, 3))
    try:
        first = await store.claim({s1: Position("p0", 4), s2: Position("p0", 5)})
        again = await store.claim({s1: Position("p0", 9), s3: Position("p0", 10)})
        assert first == {s1: Position("p0", 4), s2: Position("p0", 5)}
        assert again == {s1: Position("p0", 4), s3: Position("p0", 10)}
        assert await generations.allocate() == 2 and await generations.allocate() == 3
    finally:
        await client.close()


async def test_the_data_revision_moves_with_writes_of_figures_and_leaves_the_roster_revision_alone(
        infrastructure, unique_db_name):
    client, store = await plain_store(infrastructure, unique_db_name)
    try:
        assert await store.revisions("t1") == (0, 0)
        await store.data_changed(["t1", "t2", "t1"])  # each tenant once per call
        await store.data_changed(["t1"])
        assert await store.revisions("t1") == (0, 2) and await store.revisions("t2") == (0, 1)
        await store.write_conditionally([])  # no ambassador written: the roster revision stays
        assert await store.roster_revision("t1") == 0 and (await store.revisions("t3")).data == 0
    finally:
        await client.close()


@pytest.mark.parametrize("ferretdb_tactic", TACTICS.values(), ids=TACTICS.keys())
async def test_a_taken_claim_is_told_apart_from_this_deliverys_own_after_a_restart(infrastructure, unique_db_name,
                                                                                 ferretdb_tactic):
    """A second process (nothing remembered) meets claims the first one stored: the same position again (the
    first crashed before its slice) passes, a copy at another offset does not, however it is decided; on
    FerretDB a copy beyond every other process's announced claims is decided without reading the claim."""
    name = unique_db_name("metrics")
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    storage = await storage_with_tactic(client[name], ferretdb_tactic)
    first, second = MongoMetricsStore(storage, 1), MongoMetricsStore(storage, 1)
    s1, s2, s3, s4 = (FactId("t", f"share:s{n}") for n in range(1, 5))
    try:
        assert await first.claim({s1: Position("p0", 4), s2: Position("p0", 5)}) == {
            s1: Position("p0", 4), s2: Position("p0", 5)}
        again = await second.claim({s1: Position("p0", 4), s2: Position("p0", 9), s3: Position("p0", 10)})
        assert again[s1] == Position("p0", 4) and again[s3] == Position("p0", 10)
        assert again[s2] != Position("p0", 9)  # a copy
        assert again[s2] == (RecentClaims.ELSEWHERE if ferretdb_tactic else Position("p0", 5))
        assert await second.claim({s2: Position("p0", 5)}) == {s2: again[s2]}  # remembered as it was decided
        # The same process again, its memory lost (a batch that failed after its insert): its own earlier
        # attempt is read back, not taken for a copy.
        second._known_claims = RecentClaims(10)
        assert await second.claim({s3: Position("p0", 10), s4: Position("p0", 11)}) == {
            s3: Position("p0", 10), s4: Position("p0", 11)}
        if ferretdb_tactic:  # an announcement below the slices' progress decides nothing any more: it goes
            await second.raise_progress("p0", 20)
            await second.slice_progress(["p0"])
            assert await second.claim({s1: Position("p0", 25)}) == {s1: RecentClaims.ELSEWHERE}
            claiming = await second.collection(CLAIMING).find_one({"_id": "p0"})
            assert set(claiming[ANNOUNCED]) == {second._token}  # the first's (5) is gone, the second's is 25
            assert claiming[ANNOUNCED][second._token] == 25
    finally:
        await client.close()


async def test_tombstones_are_read_from_their_own_collection_and_earlier_ones_from_the_projection(
        infrastructure, unique_db_name):
    client, store = await plain_store(infrastructure, unique_db_name)
    a1, a2, a3 = (Person("t", f"a{n}") for n in range(1, 4))
    try:
        # Erased by an earlier release: the tombstone only in the projection.
        await store.collection(AMBASSADORS).insert_one({"_id": "t|a3", TENANT_FIELD: "t", "ambassador_id": "a3",
                                                        "erased": True})
        await apply_exactly_once(store, [Fragment(AmbassadorKey("t", "a1"), Position("advocacy_ambassador_0", 0),
                                                  AmbassadorChange(erased=True))])
        assert await store.erased_among({a1, a2, a3}) == {a1, a3}
        assert await store.collection(TOMBSTONES).count_documents({}) == 2
        assert await store.erased_among({a2}) == set()
        # Erased meanwhile by another process: seen on the next look.
        other = MongoMetricsStore(store.storage, 1)
        await apply_exactly_once(other, [Fragment(AmbassadorKey("t", "a2"), Position("advocacy_ambassador_1", 0),
                                                  AmbassadorChange(erased=True))])
        assert await store.erased_among({a2}) == {a2}
    finally:
        await client.close()


async def _consume(store: MongoMetricsStore, batches: list[list[Fragment]], reported: list, refusals: list) -> None:
    """What a worker does with its batches, keeping every write the store reported as applied or refused."""
    for batch in batches:
        pending = plan_writes(batch)
        while pending:
            refused = await store.write_conditionally(pending)
            reported += [write for write in pending if write not in refused]
            refusals += refused
            watermarks = await store.read_watermarks([write.target for write in refused])
            pending = plan_writes(f for write in refused for f in above_watermarks(write, watermarks.get(write.target, {})))
        await asyncio.sleep(0)


def _batches(partition: str, events: int, size: int, targets: list[CounterKey]) -> list[list[Fragment]]:
    fragments = [fragment(n, partition, target=targets[n % len(targets)]) for n in range(events)]
    return [fragments[start:start + size] for start in range(0, events, size)]


@pytest.mark.parametrize("ferretdb_tactic", TACTICS.values(), ids=TACTICS.keys())
async def test_two_clients_updating_the_same_documents_lose_nothing_and_report_nothing_false(
        infrastructure, unique_db_name, ferretdb_tactic):
    """Two independent clients (two workers, each owning other partitions, as after a rebalance) add to the
    same counter documents at the same time; with the condition in the filter they may even deliver the same
    partition at once. Every event counts once, and every write reported as applied is in the document."""
    name = unique_db_name("metrics")
    clients = [create_client(infrastructure.mongodb_uri, f"metrics-race-{n}") for n in range(2)]
    stores = [MongoMetricsStore(await storage_with_tactic(c[name], ferretdb_tactic), 1) for c in clients]
    targets = [TOTAL, dataclasses.replace(TOTAL, dimension=Dimension.CAMPAIGN, value="camp1")]
    events = 60
    if ferretdb_tactic:  # one consumer per partition: the premise of checking on a read
        work = [_batches("advocacy_share_0", events, 7, targets), _batches("advocacy_share_1", events, 5, targets)]
        expected = events  # per target: half of each partition's events, from two partitions
    else:  # the same partition delivered to both at once, with other batch boundaries
        # (one document, so that "refused" never covers a write of the same command that went through)
        targets = [TOTAL]
        work = [_batches("advocacy_share_0", events, 7, targets), _batches("advocacy_share_0", events, 5, targets)]
        expected = events
    reported: list[list] = [[], []]
    refusals: list[list] = [[], []]
    try:
        await asyncio.gather(*(_consume(store, batches, applied, refused) for store, batches, applied, refused
                               in zip(stores, work, reported, refusals)))
        for target in targets:
            assert await shares_of(stores[0], target) == expected
        stored = await stores[1].read_watermarks(targets)
        for write in reported[0] + reported[1]:
            assert all(stored[write.target][p] >= mark for p, mark in write.marks.items())
        if ferretdb_tactic:
            assert reported[0] and reported[1] and not refusals[0] + refusals[1]  # both wrote, never in each other's way
        else:
            assert refusals[0] + refusals[1]  # they met: one was refused what the other had written
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("ferretdb_tactic", TACTICS.values(), ids=TACTICS.keys())
async def test_slices_are_stored_once_per_key_read_before_folding_and_folded_once(infrastructure, unique_db_name,
                                                                                ferretdb_tactic):
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    store = MongoMetricsStore(await storage_with_tactic(client[unique_db_name("metrics")], ferretdb_tactic), 1)
    await store.ensure_indexes()
    partition = "advocacy_share_0"
    stored = Slice(partition, 10, 19, {TOTAL: {"shares": 10}})
    try:
        assert await store.append_slices([stored]) == []
        # The same key again (a redelivery with other boundaries) answers with what is stored.
        assert await store.append_slices([Slice(partition, 10, 14, {TOTAL: {"shares": 5}}),
                                          Slice(partition, 20, 20, {TOTAL: {"shares": 1}})]) == [stored.span]
        assert await shares_of(store) == 11  # pending slices are read
        assert await fold_slices(store, [partition]) == 2
        assert await store.pending_slices(None) == [] and await store.slice_progress([partition]) == {partition: 20}
        assert await shares_of(store) == 11  # now from the rolled-up document
        assert await store.append_slices([Slice(partition, 10, 19, {TOTAL: {"shares": 10}})]) == []
        assert await shares_of(store) == 11  # a folded slice stored again is below the watermark: not counted
        assert await fold_slices(store, None) == 1 and await shares_of(store) == 11
    finally:
        await client.close()


async def test_activity_is_kept_per_day_and_view_read_per_view_erased_per_person(infrastructure, unique_db_name):
    """One document per tenant, day and view; a view reads only its own; rows joined back are the rows added;
    the former per-person layout is still read; an erasure leaves no trace of the person in either."""
    client = create_client(infrastructure.mongodb_uri, "metrics-store-test")
    generations = MongoGenerations(await Storage.open(client[unique_db_name("metrics")], "test-cursor-key"))
    store = await generations.prepare(await generations.current())
    first, second = DAY.isoformat(), (DAY + timedelta(days=1)).isoformat()
    rows = [ActivityDay("t", "a1", first, frozenset({"camp1"}), frozenset({"c1"}), frozenset({"x"})),
            ActivityDay("t", "a2", first, frozenset({"camp1", "camp2"}), frozenset({"c2"}), frozenset({"linkedin"})),
            ActivityDay("t", "a1", second, frozenset({"camp2"}), frozenset({"c3"}), frozenset({"x"})),
            ActivityDay("other", "a1", first, frozenset({"camp1"}), frozenset({"c1"}), frozenset({"x"}))]
    both = Period(DAY, DAY + timedelta(days=1))
    try:
        await store.add_activity(rows)
        await store.add_activity(rows[:1])  # a fold done twice changes nothing
        days = store.collection(ACTIVITY_DAYS)
        assert await days.count_documents({TENANT_FIELD: "t", "day": first}) == 1 + 2 + 2 + 2  # tenant, 2 of each
        assert set(await store.list_activity("t", both)) == set(rows[:3])  # every view joined: whole rows
        camp1 = await store.list_activity("t", both, Dimension.CAMPAIGN, "camp1")
        assert sorted((r.ambassador_id, r.day) for r in camp1) == [("a1", first), ("a2", first)]
        assert all("camp1" in r.campaigns for r in camp1)
        team = await store.list_activity("t", both, Dimension.TEAM, "red")  # who shared at all
        assert sorted((r.ambassador_id, r.day) for r in team) == [("a1", first), ("a1", second), ("a2", first)]
        assert {r.ambassador_id for r in await store.list_activity("t", Period(DAY, DAY), Dimension.NETWORK,
                                                                   "x")} == {"a1"}
        # A generation written before the per-day layout: its rows still count.
        await store.collection(ACTIVITY).insert_one({"_id": "t|a3|" + second, TENANT_FIELD: "t", "ambassador_id": "a3",
                                                     "day": second, "campaigns": ["camp1"], "contents": [],
                                                     "networks": []})
        camp1 = await store.list_activity("t", both, Dimension.CAMPAIGN, "camp1")
        assert sorted((r.ambassador_id, r.day) for r in camp1) == [("a1", first), ("a2", first), ("a3", second)]

        await store.erase_individual(Person("t", "a1"))
        await store.erase_individual(Person("t", "a3"))
        assert {r.ambassador_id for r in await store.list_activity("t", both)} == {"a2"}
        assert await days.count_documents({"people": "a1", TENANT_FIELD: "t"}) == 0
        assert {r.ambassador_id for r in await store.list_activity("other", both)} == {"a1"}  # another tenant's
    finally:
        await client.close()


async def test_an_erasure_leaves_no_trace_of_the_person_in_pending_slices_of_either_stored_form(
        infrastructure, unique_db_name):
    client, store = await plain_store(infrastructure, unique_db_name)
    day = DAY.isoformat()
    mine = CounterKey("t", day, Dimension.AMBASSADOR, "a1")
    theirs = CounterKey("t", day, Dimension.AMBASSADOR, "a2")
    try:
        await store.append_slices([Slice("advocacy_share_0", 0, 9, {TOTAL: {"shares": 2}, mine: {"shares": 1},
                                                                     theirs: {"shares": 1}},
                                         (ActivityDay("t", "a1", day), ActivityDay("t", "a2", day)))])
        # A slice as an earlier release stored it: rows of subdocuments.
        await store.collection("slices").insert_one({
            "_id": "advocacy_share_1|0", "p": "advocacy_share_1", "first": 0, "last": 4,
            "counters": [{"t": "t", "d": day, "k": "ambassador", "v": "a1", "c": {"shares": 3}},
                         {"t": "t", "d": day, "k": "tenant", "v": "all", "c": {"shares": 3}}],
            "activity": [{"t": "t", "a": "a1", "d": day, "campaigns": [], "contents": [], "networks": []}]})

        await store.erase_individual(Person("t", "a1"))

        pending = {piece.partition: piece for piece in await store.pending_slices(None)}
        assert all(Person("t", "a1") not in piece.people for piece in pending.values())
        assert pending["advocacy_share_0"].counters == {TOTAL: {"shares": 2}, theirs: {"shares": 1}}
        assert pending["advocacy_share_1"].counters == {TOTAL: {"shares": 3}}  # rewritten in the current form
        assert "counters" not in await store.collection("slices").find_one({"_id": "advocacy_share_1|0"})
    finally:
        await client.close()
