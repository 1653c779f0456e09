"""Property: random event streams, consumed in random batches with crashes, redeliveries,
duplicated envelopes and any interleaving of partitions, give exactly the reference KPIs
(each day's own opted-in counts included: people join, move and leave on random days)."""

import asyncio
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advocacy_common.events import ConversionType, EngagementKind, Network
from metrics.handlers import fold_slices, project_batch
from metrics.models import Dimension, Period
from metrics.reports import kpis_of
from metrics.service import ALL_TIME, load_snapshot
from metrics_testkit import (
    BASE_DAY, CPM, InMemoryStore, Reference, SimulatedCrash, build_log, consume_plan, engaged, envelope, erased,
    moved, opted_in, opted_out, published, shared,
)

pytestmark = pytest.mark.unit

TENANTS = st.sampled_from(["t1", "t2"])
AMBASSADORS = st.sampled_from(["a1", "a2", "a3", "a4"])
TEAMS = st.sampled_from(["red", "blue", None])
CONTENTS = {"c1": "camp1", "c2": "camp1", "c3": "camp2"}
CONTENT = st.sampled_from(sorted(CONTENTS))
NETWORK = st.sampled_from([Network.LINKEDIN, Network.X, Network.XING])
NETWORK_SETS = st.lists(NETWORK, min_size=1, max_size=3, unique=True)
DAY = st.integers(0, 3)

ACTIONS = st.one_of(
    st.tuples(st.just("opt_in"), TENANTS, AMBASSADORS, TEAMS, NETWORK_SETS, st.booleans(), DAY),
    st.tuples(st.just("move"), TENANTS, AMBASSADORS, TEAMS, NETWORK_SETS, DAY),
    st.tuples(st.just("opt_out"), TENANTS, AMBASSADORS, DAY),
    st.tuples(st.just("erase"), TENANTS, AMBASSADORS, DAY),
    st.tuples(st.just("publish"), TENANTS, CONTENT, st.lists(st.sampled_from(["ai", "hr", "cloud"]), max_size=2)),
    st.tuples(st.just("share"), TENANTS, AMBASSADORS, CONTENT, TEAMS, NETWORK, DAY, st.booleans(),
              st.integers(0, 5000)),
    st.tuples(st.just("engage"), TENANTS, AMBASSADORS, CONTENT, st.booleans(), TEAMS, NETWORK, DAY,
              st.sampled_from(list(EngagementKind)), st.integers(0, 50),
              st.sampled_from([None, *ConversionType]), st.booleans()),
    st.tuples(st.just("duplicate"), st.integers(0, 10_000)),
)


def on_day(day: int):
    return BASE_DAY + timedelta(days=day)


def produce(actions):
    """Envelopes in production order; `duplicate` re-sends an earlier envelope as the relay may.

    An erased ambassador id is final: the ambassador service never emits another event for it (a login
    provisioned again gets a new id), so later opt-ins, moves and opt-outs of that id are not produced.
    Reports about the erased person's posts may still arrive, and are."""
    produced = []
    erased_ids: set[tuple[str, str]] = set()
    for number, action in enumerate(actions):
        kind, rest = action[0], action[1:]
        if kind == "duplicate":
            if produced:
                produced.append(produced[rest[0] % len(produced)])
            continue
        tenant = rest[0]
        if kind in ("opt_in", "move", "opt_out", "erase"):
            if (tenant, rest[1]) in erased_ids:
                continue
            if kind == "erase":
                erased_ids.add((tenant, rest[1]))
        if kind == "opt_in":
            event = opted_in(rest[1], rest[2], rest[3], leaderboard=rest[4], at=on_day(rest[5]))
        elif kind == "move":
            event = moved(rest[1], rest[2], rest[3], at=on_day(rest[4]))
        elif kind == "opt_out":
            event = opted_out(rest[1], at=on_day(rest[2]))
        elif kind == "erase":
            event = erased(rest[1], at=on_day(rest[2]))
        elif kind == "publish":
            event = published(rest[1], CONTENTS[rest[1]], rest[2])
        elif kind == "share":
            _, ambassador, content, team, network, day, personalized, reach = rest
            event = shared(f"s{number}", ambassador, content, CONTENTS[content], team, network, day,
                           personalized, reach)
        else:
            _, ambassador, content, with_campaign, team, network, day, what, count, conversion, unique = rest
            event = engaged(f"e{number}", f"s{number}", ambassador, content,
                            CONTENTS[content] if with_campaign else None, team, what, count, network, day,
                            conversion if what is EngagementKind.CONVERSION else None, unique,
                            self_reported=unique)  # the same draw covers self-reported figures
        produced.append((envelope(event, tenant), event))
    return produced


class RandomFolds:
    """A fold schedule for the properties: batches fold pending slices at random (crashes included)."""

    def __init__(self, rng: random.Random, every: bool = False):
        self.rng = rng
        self.every = every

    def due(self) -> bool:
        return self.every or self.rng.random() < 0.4

    def folded(self, seconds: float) -> None:
        pass


async def consume_with_crashes(log, rng: random.Random, max_batch: int) -> InMemoryStore:
    store = InMemoryStore()
    committed: dict = {}
    folds = RandomFolds(rng)
    while any(committed.get(p, 0) < len(records) for p, records in log.items()):
        batch, positions = consume_plan(log, rng, committed, max_batch)
        store.crash_after = store.writes + rng.randint(0, 3 * max_batch + 12) if rng.random() < 0.3 else None
        try:
            await project_batch(store, batch, folds)  # type: ignore[arg-type]
            committed = positions  # the offsets move only after the whole batch is durable
        except SimulatedCrash:
            pass
        store.crash_after = None
    return store


PERIODS = [Period(BASE_DAY.date(), BASE_DAY.date().replace(day=BASE_DAY.day + 3)),
           Period(BASE_DAY.date().replace(day=BASE_DAY.day + 1), BASE_DAY.date().replace(day=BASE_DAY.day + 1)),
           Period(BASE_DAY.date(), BASE_DAY.date().replace(day=BASE_DAY.day + 2))]


async def assert_equal_to_reference(store: InMemoryStore, reference: Reference) -> None:
    for tenant in ("t1", "t2"):
        for dimension in Dimension:
            for period in PERIODS:
                snapshot = await load_snapshot(store, tenant, dimension, None, period)
                # Values stored but absent from the reference (an erased person's) must count zero.
                stored_values = {row.value for row in snapshot.rows}
                for value in stored_values | reference.values(tenant, dimension):
                    expected = reference.kpis(tenant, dimension, value, period.first_day, period.last_day)
                    assert kpis_of(snapshot, value, period, CPM) == expected, (tenant, dimension, value, period)


@given(actions=st.lists(ACTIONS, min_size=1, max_size=40), seed=st.integers(0, 2**32), max_batch=st.integers(1, 9),
       partitions=st.integers(1, 3))
@settings(max_examples=200, deadline=None)
def test_kpis_equal_the_reference_despite_crashes_duplicates_and_reordering(actions, seed, max_batch, partitions):
    log = build_log(produce(actions), partitions)
    store = asyncio.run(consume_with_crashes(log, random.Random(seed), max_batch))
    asyncio.run(assert_equal_to_reference(store, Reference.of(log)))


@given(actions=st.lists(ACTIONS, min_size=1, max_size=30), seeds=st.tuples(st.integers(0, 999), st.integers(0, 999)))
@settings(max_examples=50, deadline=None)
def test_two_consumptions_of_one_log_store_the_same_counters(actions, seeds):
    log = build_log(produce(actions), 2)
    first, second = (asyncio.run(consume_with_crashes(log, random.Random(seed), 5)) for seed in seeds)
    assert asyncio.run(read_model(first)) == asyncio.run(read_model(second))
    asyncio.run(fold_slices(first, None))  # folding everything changes no figure
    assert asyncio.run(read_model(first)) == asyncio.run(read_model(second)) and not first.slices


async def read_model(store: InMemoryStore) -> dict:
    """Every counter row and activity day as the API reads them (pending slices included)."""
    model: dict = {}
    for tenant in ("t1", "t2"):
        for dimension in Dimension:
            rows = await store.list_counters(tenant, dimension, None, ALL_TIME)
            model[(tenant, dimension)] = sorted((r.value, r.day, sorted(r.parts.items())) for r in rows)
        model[(tenant, "activity")] = sorted((r.ambassador_id, r.day, sorted(r.campaigns), sorted(r.contents),
                                              sorted(r.networks)) for r in await store.list_activity(tenant, ALL_TIME))
    return model


def test_erased_person_keeps_no_individual_rows_but_totals_stay():
    events = [(envelope(e, "t1"), e) for e in (
        opted_in("a1", "red"), shared("s1", "a1", "c1", "camp1", "red"),
        engaged("e1", "s1", "a1", "c1", "camp1", "red", EngagementKind.IMPRESSION, 10),
        erased("a1"),
        engaged("e2", "s1", "a1", "c1", "camp1", "red", EngagementKind.REACTION, 2))]
    store = asyncio.run(consume_with_crashes(build_log(events, 3), random.Random(1), 2))
    period = PERIODS[0]
    individual = asyncio.run(store.list_counters("t1", Dimension.AMBASSADOR, "a1", period))
    team = asyncio.run(store.list_counters("t1", Dimension.TEAM, "red", period))
    assert individual == [] and store.activity == {}
    assert all(not piece.people for piece in store.slices.values())  # pending slices forgot the person too
    assert team[0].parts["impressions"] == 10 and team[0].parts["reactions"] == 2


def test_a_redelivery_that_ends_inside_a_stored_slice_counts_each_event_once():
    """Killed after storing the slice of offsets 0-5: the batches come back as 0-1, then 2-7."""
    events = [(envelope(e, "t1"), e) for e in [shared(f"s{n}", "a1", "c1", "camp1", "red") for n in range(8)]]
    records = next(iter(build_log(events, 1).values()))
    store = InMemoryStore()

    async def consume() -> None:
        await project_batch(store, records[:6])  # stored, but the offsets were never committed
        await project_batch(store, records[:2])  # inside the stored slice: nothing new...
        await project_batch(store, records[2:])  # ...and here only 6 and 7 are

    asyncio.run(consume())
    rows = asyncio.run(store.list_counters("t1", Dimension.TENANT, "all", PERIODS[0]))
    assert [row.parts["shares"] for row in rows] == [8]
    assert sorted(store.slices) == [(records[0].watermark_key, 0), (records[0].watermark_key, 6)]


def test_a_redelivery_after_a_fold_counts_each_event_once():
    """Killed after folding (and deleting) the slice of offsets 0-5: the batches come back as 0-1, then 2-7."""
    events = [(envelope(e, "t1"), e) for e in [shared(f"s{n}", "a1", "c1", "camp1", "red") for n in range(8)]]
    records = next(iter(build_log(events, 1).values()))
    store = InMemoryStore()

    async def consume() -> None:
        await project_batch(store, records[:6], RandomFolds(random.Random(0), every=True))  # type: ignore[arg-type]
        assert not store.slices  # folded and forgotten, the offsets never committed
        await project_batch(store, records[:2])
        await project_batch(store, records[2:])

    asyncio.run(consume())
    rows = asyncio.run(store.list_counters("t1", Dimension.TENANT, "all", PERIODS[0]))
    assert [row.parts["shares"] for row in rows] == [8]
