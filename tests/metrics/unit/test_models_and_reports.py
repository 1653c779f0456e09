import random
from datetime import date

import pytest
from pydantic import ValidationError

from metrics.models import (
    COUNTER_PARTS, TENANT_VALUE, AmbassadorStatus, AmbassadorView, ContentView, CounterRow, Dimension, Granularity,
    MembershipChange, Period, buckets, kpis, sum_parts,
)
from metrics.reports import (
    GroupTooSmall, Roster, Snapshot, leaderboard, parts_by_topic, ranked_by_engagement_rate, require_visible_team,
    visible_values,
)
from metrics.settings import MetricsSettings

pytestmark = pytest.mark.unit
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))


def parts(**values):
    return {**dict.fromkeys(COUNTER_PARTS, 0), **values}


def person(ambassador_id, team="red", status="opted_in", leaderboard_opt_in=False):
    return AmbassadorView(ambassador_id, AmbassadorStatus(status), team, leaderboard_opt_in=leaderboard_opt_in)


def test_ratios_come_from_summed_parts_and_are_null_without_denominator():
    days = [parts(impressions=100, reactions=10), parts(impressions=900, reactions=10, comments=5)]
    result = kpis(sum_parts(days), opted_in=0, active=0, cpm_by_network={})
    assert result["engagement_rate"] == 25 / 1000  # not the mean of 0.1 and 0.0167
    assert result["activation_rate"] is None and result["conversion_rate"] is None


def test_earned_media_value_uses_each_networks_cpm():
    result = kpis(parts(impressions=3000, impressions_linkedin=2000, impressions_x=1000), opted_in=1, active=1,
                  cpm_by_network={"linkedin": 10.0, "x": 4.0})
    assert result["earned_media_value"] == 24.0


def test_weeks_start_on_monday_months_on_the_first_and_buckets_are_clipped():
    weeks = buckets(MARCH, Granularity.WEEK)
    assert list(weeks)[:2] == ["2026-02-23", "2026-03-02"]
    assert weeks["2026-02-23"] == Period(date(2026, 3, 1), date(2026, 3, 1))
    months = buckets(Period(date(2026, 1, 30), date(2026, 2, 2)), Granularity.MONTH)
    assert {k: (v.first_day, v.last_day) for k, v in months.items()} == {
        "2026-01-01": ("2026-01-30", "2026-01-31"), "2026-02-01": ("2026-02-01", "2026-02-02")}
    assert sum(len(p.days()) for p in buckets(MARCH, Granularity.DAY).values()) == 31


def test_a_team_below_the_minimum_is_refused_and_left_out_of_listings():
    ambassadors = [person(f"a{n}") for n in range(4)] + [person("gone", status="opted_out")]
    with pytest.raises(GroupTooSmall):
        require_visible_team(ambassadors, "red", 5)
    require_visible_team(ambassadors, "red", 4)
    snapshot = Snapshot(Dimension.TEAM, [CounterRow("red", "2026-03-02", parts(shares=1))], [], ambassadors)
    assert visible_values(snapshot, 5) == [] and visible_values(snapshot, 4) == ["red"]


def test_the_minimum_team_size_can_never_go_below_three():
    with pytest.raises(ValidationError):
        MetricsSettings(min_team_size=2)
    assert MetricsSettings().min_team_size == 5


def test_leaderboard_lists_only_opted_in_people_who_chose_to_appear_and_did_something():
    rows = [CounterRow(who, "2026-03-02", parts(shares=1, reactions=n))
            for n, who in enumerate(["shy", "proud", "also", "left"])]
    ambassadors = [person("shy"), person("proud", leaderboard_opt_in=True), person("also", leaderboard_opt_in=True),
                   person("left", status="opted_out", leaderboard_opt_in=True), person("idle", leaderboard_opt_in=True)]
    board = leaderboard(Snapshot(Dimension.AMBASSADOR, rows, [], ambassadors), MARCH, 10)
    assert [(e.rank, e.ambassador_id) for e in board] == [(1, "also"), (2, "proud")]


def test_rankings_by_engagement_rate_and_topics_from_the_content_projection():
    content = {"c1": parts(impressions=100, comments=10), "c2": parts(impressions=10, reactions=5),
               "c3": parts(impressions=0, reactions=3)}
    assert [e.key for e in ranked_by_engagement_rate(content, 10)] == ["c2", "c1"]
    topics = parts_by_topic(content, [ContentView("c1", "camp1", "awareness", ("ai", "hr"), 1),
                                      ContentView("c2", "camp1", "awareness", ("ai",), 1)])
    assert topics["ai"]["impressions"] == 110 and topics["hr"]["comments"] == 10


def test_each_day_counts_who_was_opted_in_at_its_end():
    def view(ambassador_id, *changes, status="opted_in", erased=False):
        return AmbassadorView(ambassador_id, AmbassadorStatus(status), "red", ("x",), erased=erased,
                              history=tuple(changes))

    opted, out = AmbassadorStatus.OPTED_IN, AmbassadorStatus.OPTED_OUT
    roster = Roster([
        view("moved", MembershipChange("2026-03-02", opted, "blue", ("x",)),
             MembershipChange("2026-03-04", None, "red", ("x",))),
        # A clock behind: the opt-out dated before the opt-in still comes after it.
        view("late", MembershipChange("2026-03-05", opted, "red", ("x",)), MembershipChange("2026-03-03", out),
             status="opted_out"),
        # Erased, then an opt-in under the same id: the tombstone is never lifted.
        view("gone", MembershipChange("2026-03-01", opted, "red", ("x",)),
             MembershipChange("2026-03-03", AmbassadorStatus.ERASED), MembershipChange("2026-03-04", opted),
             status="opted_in", erased=True),
        view("legacy"),  # stored before histories were kept: its current standing on every day
    ])
    days = ["2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    assert [roster.count(Dimension.TENANT, TENANT_VALUE, day) for day in days] == [1, 2, 3, 2, 2, 2]
    assert [roster.count(Dimension.TEAM, "red", day) for day in days] == [1, 2, 2, 1, 2, 2]
    assert [roster.count(Dimension.TEAM, "blue", day) for day in days] == [0, 0, 1, 1, 0, 0]
    assert roster.counts_on("moved", Dimension.TEAM, "blue", "2026-03-03")
    assert not roster.counts_on("moved", Dimension.TEAM, "blue", "2026-03-04")
    assert not roster.counts_on("late", Dimension.TENANT, TENANT_VALUE, "2026-03-05")


@pytest.mark.parametrize("seed", range(8))
def test_who_counted_among_many_is_each_ones_standing_that_day(seed):
    """`Roster.counted_among` (one comparison for who entered once for good) gives what `counts_on` gives
    for each person, whatever the histories: opt-ins, opt-outs, moves between teams and networks, erasures."""
    pick = random.Random(seed)
    days = [f"2026-03-{n:02d}" for n in range(1, 15)]
    statuses = [AmbassadorStatus.OPTED_IN, AmbassadorStatus.OPTED_OUT, AmbassadorStatus.ERASED, None]

    def history() -> tuple[MembershipChange, ...]:
        changes = []
        for _ in range(pick.randint(0, 4)):
            moved = pick.random() < 0.5
            changes.append(MembershipChange(pick.choice(days), pick.choices(statuses, [5, 2, 1, 2])[0],
                                            pick.choice(["red", "blue"]) if moved else None,
                                            tuple(pick.sample(["x", "linkedin"], pick.randint(1, 2))) if moved else None))
        return tuple(changes)

    people = [AmbassadorView(f"a{n}", pick.choice(statuses[:3]), pick.choice(["red", "blue"]), ("x",),
                             history=history()) for n in range(40)]
    roster = Roster(people)
    everyone = [p.ambassador_id for p in people] + ["stranger"]
    for dimension, value in ((Dimension.TENANT, TENANT_VALUE), (Dimension.TEAM, "red"), (Dimension.TEAM, "blue"),
                             (Dimension.NETWORK, "linkedin"), (Dimension.AMBASSADOR, "a3")):
        for day in ["2026-02-28", *days]:
            assert roster.counted_among(everyone, dimension, value, day) == {
                a for a in everyone if roster.counts_on(a, dimension, value, day)}
