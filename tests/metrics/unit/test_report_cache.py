"""The computed reports kept per process (`MetricsQueries.reports`): the freshness window, one computation
per key, a rebuild's switch and a change of who counts seen at once, tenants apart, individuals never kept,
the roster read once per revision, a kept report rendered once; and the snapshot's day index, which must
give what a plain filter of every row gives."""

import asyncio
import gc
import json
import random
from datetime import date, timedelta

import pytest

from advocacy_common.refreshing import RefreshingCache
from metrics.api import _RENDERED, rendered
from metrics.handlers import fold_slices, project_batch
from metrics.models import (
    TENANT_VALUE, ActivityDay, AmbassadorStatus, AmbassadorView, CounterRow, Dimension, Granularity, Period, Person,
    kpis, sum_parts,
)
from metrics.reports import Snapshot, active, kpis_of, series_of
from metrics.schemas import KpiReport
from metrics.service import GroupTooSmall, MetricsQueries, ReportPolicy, rebuild_generation
from metrics_testkit import (
    BASE_DAY, CPM, InMemoryGenerations, build_log, envelope, opted_in, opted_out, programme, published, shared, split,
)

pytestmark = pytest.mark.unit
PERIOD = Period(BASE_DAY.date(), BASE_DAY.date())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingGenerations(InMemoryGenerations):
    """Counts, over every generation's store, the reads of activity (one per computed report) and of
    the ambassador projection."""

    def __init__(self) -> None:
        super().__init__()
        self.computed = self.rosters_read = self.pointer_reads = 0

    async def current(self) -> int:
        self.pointer_reads += 1
        await asyncio.sleep(0)
        return await super().current()

    def store(self, generation: int):
        store = super().store(generation)
        if not getattr(store, "counting", False):
            activity, ambassadors = store.list_activity, store.list_ambassadors

            async def counted_activity(*arguments):
                self.computed += 1
                await asyncio.sleep(0)  # a real read yields: concurrent requests meet here
                return await activity(*arguments)

            async def counted_ambassadors(tenant: str):
                self.rosters_read += 1
                return await ambassadors(tenant)

            store.list_activity, store.list_ambassadors, store.counting = counted_activity, counted_ambassadors, True
        return store


async def kept_queries(*batches, fresh=1.0) -> tuple[MetricsQueries, CountingGenerations, Clock]:
    generations, clock = CountingGenerations(), Clock()
    for batch in batches:
        await project_batch(generations.store(await generations.current()), batch)
    generations.pointer_reads = 0
    return MetricsQueries(generations, ReportPolicy(3, CPM), RefreshingCache(fresh, 0.0, clock=clock)), \
        generations, clock


async def test_a_report_is_computed_once_per_window_however_many_wait():
    later = [shared("s2", "a1", "c1", "camp1", "red")]
    first, second = split(programme("t1", *later), later)
    queries, generations, clock = await kept_queries(first)
    answers = await asyncio.gather(*(queries.overview("t1", PERIOD) for _ in range(20)))
    assert generations.computed == 1 and all(a == answers[0] for a in answers)
    assert generations.pointer_reads == 1  # the requests arriving together joined one read of the live pointer
    assert answers[0].kpis["shares"] == 1
    # A new share inside the window is not seen yet; once the window has passed, it is.
    await project_batch(generations.store(1), second)
    clock.now = 0.9
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 1 and generations.computed == 1
    clock.now = 1.1
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 2 and generations.computed == 2


async def test_past_its_window_a_report_is_computed_again_only_if_figures_were_written():
    queries, generations, clock = await kept_queries(programme(), fresh=1.0)
    queries.recompute_seconds = 30.0
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 1 and generations.computed == 1
    clock.now = 5.0  # past the window, nothing written: the kept report is served again, no read of activity
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 1 and generations.computed == 1
    await project_batch(generations.store(1), programme("t1", shared("s2", "a1", "c1", "camp1", "red"))[-1:])
    clock.now = 5.5  # inside the window it has restarted: not seen yet
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 1 and generations.computed == 1
    clock.now = 7.0  # past it, and the batch raised the data revision: computed again, the share is seen
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 2 and generations.computed == 2
    clock.now = 40.0  # nothing written, but past `recompute_seconds`: computed again all the same
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 2 and generations.computed == 3


async def test_a_fold_raises_the_data_revision_of_the_tenants_it_folded():
    queries, generations, _ = await kept_queries(programme())
    store = generations.store(1)
    before = await store.revisions("t1")
    assert before.data > 0  # the batch raised it
    assert await fold_slices(store, None) > 0
    after = await store.revisions("t1")
    assert after.data > before.data and after.roster == before.roster


async def test_each_view_value_period_and_granularity_has_its_own_report():
    queries, generations, _ = await kept_queries(programme())
    await queries.overview("t1", PERIOD)
    await queries.overview("t1", Period(PERIOD.first, PERIOD.last + timedelta(days=1)))
    await queries.series("t1", Dimension.TENANT, TENANT_VALUE, PERIOD, Granularity.DAY)
    await queries.series("t1", Dimension.TENANT, TENANT_VALUE, PERIOD, Granularity.WEEK)
    await queries.report("t1", Dimension.CAMPAIGN, "camp1", PERIOD)
    await queries.report("t1", Dimension.TEAM, "red", PERIOD)
    await queries.teams("t1", PERIOD)
    assert generations.computed == 7
    await queries.report("t1", Dimension.CAMPAIGN, "camp1", PERIOD)
    await queries.series("t1", Dimension.TENANT, TENANT_VALUE, PERIOD, Granularity.DAY)
    assert generations.computed == 7


async def test_a_rebuilds_switch_is_seen_at_once():
    queries, generations, _ = await kept_queries(programme())
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 1

    async def replay(generation, store):
        await project_batch(store, programme("t1", shared("s2", "a1", "c1", "camp1", "red")))
        return 0

    await rebuild_generation(generations, replay)
    assert (await queries.overview("t1", PERIOD)).kpis["shares"] == 2  # same clock: the window has not passed


async def test_a_change_of_who_counts_is_seen_at_once():
    later = [opted_out("a2")]
    first, second = split(programme("t1", *later), later)
    queries, generations, _ = await kept_queries(first)
    before = await queries.report("t1", Dimension.TEAM, "red", PERIOD)
    assert before.kpis["ambassadors_opted_in"] == 3
    await project_batch(generations.store(1), second)
    with pytest.raises(GroupTooSmall):  # two left in red now, below the threshold of 3: refused at once
        await queries.report("t1", Dimension.TEAM, "red", PERIOD)
    assert (await queries.overview("t1", PERIOD)).kpis["ambassadors_opted_in"] == 3  # of 4, one left


async def test_the_roster_is_read_once_per_revision_for_every_report():
    later = [opted_out("a2")]
    first, second = split(programme("t1", *later), later)
    queries, generations, clock = await kept_queries(first)
    await queries.overview("t1", PERIOD)
    await queries.report("t1", Dimension.TEAM, "red", PERIOD)
    await queries.series("t1", Dimension.TENANT, TENANT_VALUE, PERIOD, Granularity.DAY)
    clock.now = 5.0  # the reports' window has passed, the roster's has not
    await generations.store(1).data_changed(["t1"])  # and figures were written: the overview is computed again
    await queries.overview("t1", PERIOD)
    assert (generations.computed, generations.rosters_read) == (4, 1)
    await project_batch(generations.store(1), second)
    assert (await queries.overview("t1", PERIOD)).kpis["ambassadors_opted_in"] == 3
    assert generations.rosters_read == 2
    # Only the current revision's projection is kept (an older one may hold an erased person's name).
    assert [key[2] for key in queries.rosters._entries] == [await generations.store(1).roster_revision("t1")]


async def test_a_refusal_is_kept_like_an_answer_and_raised_to_every_caller():
    queries, generations, _ = await kept_queries(programme())
    for _ in range(3):
        with pytest.raises(GroupTooSmall) as refused:
            await queries.report("t1", Dimension.TEAM, "blue", PERIOD)
        assert refused.value.team_id == "blue"
    assert generations.computed == 1


async def test_tenants_never_share_a_report():
    ones = [e for d in programme("t1") for e in [d.event]]
    twos = [opted_in("z1", "red"), published("c1", "camp1"), *[shared(f"s{n}", "z1", "c1", "camp1", "red")
                                                              for n in range(5)]]
    log = build_log([(envelope(e, "t1"), e) for e in ones] + [(envelope(e, "t2"), e) for e in twos])
    queries, generations, _ = await kept_queries([d for records in log.values() for d in records])
    one, two = await queries.overview("t1", PERIOD), await queries.overview("t2", PERIOD)
    assert (one.kpis["shares"], two.kpis["shares"]) == (1, 5)
    assert (one.kpis["ambassadors_opted_in"], two.kpis["ambassadors_opted_in"]) == (4, 1)
    assert generations.computed == 2


async def test_individual_figures_are_never_kept():
    later = [shared("s2", "a0", "c1", "camp1", "red")]
    log, second = split(programme("t1", *later), later)
    queries, generations, _ = await kept_queries(log)
    first = await queries.my_series(Person("t1", "a0"), PERIOD, Granularity.DAY)
    await project_batch(generations.store(1), second)
    again = await queries.my_series(Person("t1", "a0"), PERIOD, Granularity.DAY)
    assert (first.points[0].kpis["shares"], again.points[0].kpis["shares"]) == (1, 2)
    with pytest.raises(ValueError):
        await queries.report("t1", Dimension.AMBASSADOR, "a0", PERIOD)
    assert not any(key[4] is Dimension.AMBASSADOR for key in queries.reports._entries)


# --- the day index of a snapshot --------------------------------------------------------

def plain_kpis(snapshot: Snapshot, value: str, period: Period) -> dict:
    """kpis_of as it was before the index: every row filtered for every period."""
    rows = [row.parts for row in snapshot.rows if row.value == value and period.contains(row.day)]
    roster, last = snapshot.roster, period.last_day
    sharers = {row.ambassador_id for row in snapshot.activity if period.contains(row.day)}
    people = {a for a in sharers if roster.counts_on(a, snapshot.dimension, value, last)}
    return kpis(sum_parts(rows), opted_in=roster.count(snapshot.dimension, value, last),
                active=len(active(snapshot.activity, people, snapshot.dimension, value, period)), cpm_by_network=CPM)


@pytest.mark.parametrize("seed", range(5))
def test_the_day_index_gives_what_filtering_every_row_gives(seed):
    pick = random.Random(seed)
    first = date(2026, 3, 1)
    days = [(first + timedelta(days=n)).isoformat() for n in range(20)]
    people = [f"a{n}" for n in range(12)]
    ambassadors = [AmbassadorView(a, AmbassadorStatus.OPTED_IN if pick.random() < 0.8 else AmbassadorStatus.OPTED_OUT,
                                  pick.choice(["red", "blue"]), tuple(pick.sample(["linkedin", "x"], pick.randint(1, 2))))
                   for a in people]
    activity = [ActivityDay("t", a, day, frozenset(pick.sample(["k1", "k2", "k3"], pick.randint(1, 2))),
                            frozenset(), frozenset(pick.sample(["linkedin", "x"], 1)))
                for day in days for a in people if pick.random() < 0.3]
    pick.shuffle(activity)  # the store gives no order
    for dimension, values in ((Dimension.TENANT, [TENANT_VALUE]), (Dimension.CAMPAIGN, ["k1", "k3"]),
                              (Dimension.NETWORK, ["x"]), (Dimension.TEAM, ["red", "blue"])):
        rows = [CounterRow(value, day, {"shares": pick.randint(0, 5), "impressions": pick.randint(0, 50)})
                for value in values for day in days if pick.random() < 0.7]
        snapshot = plain = Snapshot(dimension, rows, activity, ambassadors)
        for value in values:
            for start, end in ((0, 19), (3, 9), (5, 5), (12, 19)):
                period = Period(first + timedelta(days=start), first + timedelta(days=end))
                assert kpis_of(snapshot, value, period, CPM) == plain_kpis(plain, value, period)
            series = series_of(snapshot, value, Period(first, first + timedelta(days=19)), Granularity.DAY, CPM)
            assert [p.kpis for p in series] == [plain_kpis(plain, value, p.period) for p in series]


async def test_a_kept_report_is_rendered_once_and_forgotten_with_it():
    queries, _, _ = await kept_queries(programme())
    report = await queries.overview("t1", PERIOD)
    first, again = rendered(KpiReport, report), rendered(KpiReport, await queries.overview("t1", PERIOD))
    assert first.body == again.body == KpiReport.model_validate(report).model_dump_json().encode()
    assert json.loads(first.body)["kpis"]["shares"] == 1 and first.media_type == "application/json"
    assert (KpiReport, id(report)) in _RENDERED
    key = (KpiReport, id(report))
    del report, first, again
    queries.reports._entries.clear()
    gc.collect()
    assert key not in _RENDERED


async def test_a_long_computation_hands_the_loop_back_once_its_turn_is_over():
    from metrics.turns import Turns

    ran = []

    async def other_request():
        ran.append("other")

    async def computation(turns: Turns) -> None:
        asyncio.get_running_loop().create_task(other_request())
        for step in range(3):
            ran.append(step)
            await turns.take()

    await computation(Turns(seconds=3600))  # a turn that never ends: nothing else runs in between
    assert ran == [0, 1, 2]
    await asyncio.sleep(0)
    ran.clear()
    await computation(Turns(seconds=0))  # every turn over at once: the other request runs after the first step
    assert ran == [0, "other", 1, 2]
