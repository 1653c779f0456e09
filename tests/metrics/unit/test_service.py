"""The use cases on the shared in-memory fakes: visibility rules, the live feed, the rebuild."""

import asyncio
from datetime import UTC, datetime

import pytest

from advocacy_common.events import EngagementKind
from metrics.handlers import project_batch
from metrics.models import Dimension, Period
from metrics.service import GroupTooSmall, MetricsQueries, ReportPolicy, UnknownSubject, rebuild_generation
from metrics_testkit import (
    BASE_DAY, CPM, InMemoryGenerations, deliveries, engaged, erased, moved, opted_in, opted_out, programme, published,
    shared,
)

pytestmark = pytest.mark.unit
PERIOD = Period(BASE_DAY.date(), BASE_DAY.date())


async def queries_with(*batches, minimum=3) -> tuple[MetricsQueries, InMemoryGenerations]:
    generations = InMemoryGenerations()
    for batch in batches:
        await project_batch(generations.store(await generations.current()), batch)
    return MetricsQueries(generations, ReportPolicy(minimum, CPM)), generations


async def test_visibility_unknown_subjects_small_teams_and_other_tenants():
    queries, _ = await queries_with(programme())
    red = await queries.report("t1", Dimension.TEAM, "red", PERIOD)
    assert (red.kpis["ambassadors_opted_in"], red.kpis["shares"], red.kpis["impressions"]) == (3, 1, 50)
    with pytest.raises(GroupTooSmall):
        await queries.report("t1", Dimension.TEAM, "blue", PERIOD)
    listing = await queries.teams("t1", PERIOD)
    assert [t.value for t in listing.items] == ["red"] and listing.hidden_teams == 1
    # A campaign known from the content projection has zero figures; one never seen is unknown.
    assert (await queries.report("t1", Dimension.CAMPAIGN, "quiet-campaign", PERIOD)).kpis["shares"] == 0
    for tenant, value in (("t1", "never-seen"), ("t2", "camp1")):
        with pytest.raises(UnknownSubject):
            await queries.report(tenant, Dimension.CAMPAIGN, value, PERIOD)


async def test_the_feed_sends_the_overview_now_and_again_when_it_changes():
    queries, generations = await queries_with(programme())
    today = (datetime.now(UTC).date() - BASE_DAY.date()).days
    feed = queries.overview_changes("t1", poll_seconds=0.01)
    first = await anext(feed)
    late = asyncio.create_task(anext(feed))
    await asyncio.sleep(0.05)
    assert not late.done()  # nothing changed: nothing sent
    await project_batch(generations.store(1), deliveries("t1", shared("s-now", "a1", "c1", "camp1", "red", day=today)))
    second = await asyncio.wait_for(late, timeout=2)
    await feed.aclose()
    assert (first.kpis["shares"], second.kpis["shares"]) == (0, 1)


async def test_rebuild_fills_a_fresh_generation_then_makes_it_live():
    queries, generations = await queries_with(programme())
    live = await queries.overview("t1", PERIOD)
    replayed = programme() + deliveries("t1", shared("s2", "a1", "c1", "camp1", "red"))

    async def replay(generation, store):
        assert generation == 2 and await generations.current() == 1  # readers stay on the old one meanwhile
        await project_batch(store, replayed)
        return len(replayed)

    assert await rebuild_generation(generations, replay) == (2, len(replayed))
    rebuilt = await queries.overview("t1", PERIOD)
    assert (live.kpis["shares"], rebuilt.kpis["shares"]) == (1, 2)
    assert (await generations.store(1).list_counters("t1", Dimension.TENANT, "all", PERIOD))[0].parts["shares"] == 1


async def test_a_login_provisioned_again_after_an_erasure_gets_statistics_of_its_own():
    from datetime import timedelta

    from advocacy_common.auth import Principal, ambassador_id_for
    from advocacy_common.envelope import utcnow
    from advocacy_common.events import GdprExportRequested
    from metrics.models import Granularity
    from metrics_testkit import erased

    ann = Principal(subject="ann", tenant="t1", roles=frozenset({"ambassador"}), claims={})
    old = ambassador_id_for("t1", "ann")
    again = opted_in("new-ann", "red", at=BASE_DAY + timedelta(hours=1)).model_copy(update={"subject_key": old})
    # One log, in production order; the erased one's opt-in comes again last (a copy re-published by a relay):
    # the login's key stays with the newcomer.
    queries, generations = await queries_with(deliveries(
        "t1", *[opted_in(f"a{n}", "red") for n in range(3)], published("c1", "camp1"), opted_in(old, "red"),
        shared("s-old", old, "c1", "camp1", "red"), erased(old), again,
        shared("s-new", "new-ann", "c1", "camp1", "red"), opted_in(old, "red")))
    assert await queries.me(ann) == ("t1", "new-ann")
    mine = await queries.my_series(await queries.me(ann), PERIOD, Granularity.DAY)
    assert sum(point.kpis["shares"] for point in mine.points) == 1
    # a0..a2 and the newcomer: the erased person is no longer counted, the newcomer is.
    assert (await queries.overview("t1", PERIOD)).kpis["ambassadors_opted_in"] == 4

    store = generations.store(await generations.current())
    await project_batch(store, deliveries("t1", *[GdprExportRequested(export_id=x, ambassador_id=p,
                                                                       requested_at=utcnow())
                                                   for x, p in (("x-old", old), ("x-new", "new-ann"))]))
    assert store.records("t1", "x-old") == {"ambassador": [], "daily_statistics": [], "activity_days": []}
    new = store.records("t1", "x-new")
    assert [row["shares"] for row in new["daily_statistics"]] == [1] and new["ambassador"][0]["team_id"] == "red"


async def test_leaderboard_names_and_content_titles_come_from_the_projections():
    later = [moved("shown", "red"), erased("quiet")]
    log = deliveries(
        "t1", opted_in("shown", "red", leaderboard=True, name="Sam"), opted_in("quiet", "red", leaderboard=True),
        opted_in("hidden", "red", name="Never sent"), opted_in("leaves", "red", leaderboard=True, name="Lee"),
        published("c1", "camp1", title="Launch"), published("c1", "camp1", title="Launch, updated", version=2),
        *[shared(f"s-{who}", who, "c1", "camp1", "red") for who in ("shown", "quiet", "hidden", "leaves")],
        engaged("e1", "s-shown", "shown", "c1", "camp1", "red", EngagementKind.IMPRESSION, 10),
        opted_out("leaves"), *later)
    queries, generations = await queries_with([d for d in log if d.event not in later])
    board = await queries.leaderboard("t1", PERIOD, 10)
    assert sorted((e.ambassador_id, e.display_name) for e in board.items) == [("quiet", None), ("shown", "Sam")]
    top = await queries.top_contents("t1", PERIOD, 10, 1)
    assert [(item.key, item.title) for item in top.items] == [("c1", "Launch, updated")]

    # Leaving the leaderboard, opting out or being erased takes the name out of the projection.
    await project_batch(generations.store(1), [d for d in log if d.event in later])
    names = {view.ambassador_id: view.leaderboard_name for view in await generations.store(1).list_ambassadors("t1")}
    assert names == dict.fromkeys(("shown", "quiet", "hidden", "leaves"))
    assert (await queries.leaderboard("t1", PERIOD, 10)).items == []
