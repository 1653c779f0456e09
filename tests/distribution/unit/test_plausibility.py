"""Plausibility of engagement reports: each rule as a pure function, then through the one ingestion entry
point (`Engagement.ingest`, what webhooks and pollers call) over the fakes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from advocacy_common.errors import Problem
from advocacy_common.events import ConversionType, EngagementKind
from distribution.models.engagement import Observation, ReportSource
from distribution.models.plausibility import (
    MAX_COUNT, RECENT_REPORTS_KEPT, Implausible, ShareTotals, check_confirmed, check_count, check_occurred_at,
    reported_ambassador,
)
from distribution.models.projections import ERASED, AmbassadorStatus, AmbassadorView

from distribution_world import NOW, TENANT, World, principal

pytestmark = pytest.mark.unit
SKEW = timedelta(minutes=5)
POLLER = ReportSource(key="linkedin-poller", name="linkedin")


def reason(call) -> str:
    with pytest.raises(Implausible) as refused:
        call()
    return refused.value.reason


# --- the rules, pure ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(MAX_COUNT))
def test_counts_are_between_one_and_the_bound_of_their_kind(kind):
    check_count(kind, 1)
    check_count(kind, MAX_COUNT[kind])
    for count in (0, -1, MAX_COUNT[kind] + 1, 2**63):
        assert reason(lambda c=count: check_count(kind, c)) == "count_out_of_range"


def test_clicks_are_not_for_connectors_to_report():
    assert reason(lambda: check_count(EngagementKind.CLICK, 1)) == "kind_not_reportable"


def test_occurred_at_must_carry_a_time_zone():
    assert reason(lambda: check_occurred_at(datetime(2026, 3, 10, 12), NOW, NOW, SKEW)) == \
        "timestamp_without_time_zone"


def test_occurred_at_may_be_late_by_the_clock_skew_and_no_more():
    check_occurred_at(NOW + SKEW, NOW, NOW - timedelta(days=1), SKEW)
    assert reason(lambda: check_occurred_at(NOW + SKEW + timedelta(seconds=1), NOW, NOW, SKEW)) == \
        "occurred_in_the_future"
    assert reason(lambda: check_occurred_at(NOW + timedelta(days=3), NOW, NOW, SKEW)) == "occurred_in_the_future"


def test_occurred_at_may_precede_the_confirmation_by_the_clock_skew_and_no_more():
    confirmed = NOW - timedelta(hours=1)
    check_occurred_at(confirmed - SKEW, NOW, confirmed, SKEW)
    assert reason(lambda: check_occurred_at(confirmed - SKEW - timedelta(seconds=1), NOW, confirmed, SKEW)) == \
        "occurred_before_the_share"


def test_history_is_accepted_only_as_far_back_as_the_backfill_setting_allows():
    confirmed, backfill = NOW - timedelta(hours=1), timedelta(days=28)
    check_occurred_at(confirmed - backfill - SKEW, NOW, confirmed, SKEW, backfill)
    assert reason(lambda: check_occurred_at(confirmed - backfill - SKEW - timedelta(seconds=1), NOW, confirmed,
                                            SKEW, backfill)) == "occurred_before_the_share"
    assert reason(lambda: check_occurred_at(NOW + timedelta(hours=1), NOW, confirmed, SKEW, backfill)) == \
        "occurred_in_the_future"  # the backfill never opens the future


def test_only_a_confirmed_share_is_a_post():
    assert reason(lambda: check_confirmed(None, "share_id")) == "unknown_post"


async def test_a_prepared_share_is_not_a_post(world):
    prepared = await world.prepare()
    assert reason(lambda: check_confirmed(prepared, "post_url")) == "share_not_confirmed"
    confirmed = await world.sharing.confirm(principal("amb-1"), prepared.id, None, NOW)
    assert check_confirmed(confirmed, "share_id") == confirmed


async def test_an_erased_person_is_named_by_no_event_even_before_the_erasure_reached_the_share(world):
    share = await world.prepare()
    me = share.ambassador_id
    opted_out = AmbassadorView(tenant=TENANT, ambassador_id=me, status=AmbassadorStatus.OPTED_OUT)
    erased = AmbassadorView(tenant=TENANT, ambassador_id=me, status=AmbassadorStatus.ERASED)
    assert reported_ambassador(share, opted_out) == me  # an opted-out person's earlier posts still count
    assert reported_ambassador(share, erased) == ERASED
    assert reported_ambassador(share.model_copy(update={"ambassador_id": ERASED}), None) == ERASED


def test_replies_never_exceed_comments_and_a_report_counts_once():
    totals = ShareTotals(tenant=TENANT, share_id="s1")
    totals = totals.counting(EngagementKind.COMMENT, 3, "e1")
    totals = totals.counting(EngagementKind.COMMENT_REPLY, 2, "e2")
    assert (totals.comments, totals.replies) == (3, 2)
    assert totals.counting(EngagementKind.COMMENT_REPLY, 2, "e2") is None  # the same report again
    assert reason(lambda: totals.counting(EngagementKind.COMMENT_REPLY, 2, "e3")) == "replies_exceed_comments"
    totals = totals.counting(EngagementKind.COMMENT_REPLY, 1, "e3")
    assert (totals.comments, totals.replies) == (3, 3)


def test_totals_remember_a_bounded_number_of_recent_reports():
    totals = ShareTotals(tenant=TENANT, share_id="s1")
    for i in range(RECENT_REPORTS_KEPT + 5):
        totals = totals.counting(EngagementKind.COMMENT, 1, f"e{i}")
    assert len(totals.recent) == RECENT_REPORTS_KEPT and totals.recent[-1] == f"e{RECENT_REPORTS_KEPT + 4}"
    assert totals.comments == RECENT_REPORTS_KEPT + 5


# --- through the entry point ------------------------------------------------------------------------

@pytest.fixture
def world() -> World:
    return World()


async def confirmed_share(world: World, login: str = "amb-1", at: datetime = NOW):
    prepared = await world.prepare(login)
    return await world.sharing.confirm(principal(login), prepared.id, f"https://li/{login}", at)


def observation(share_id: str | None, kind: str = "impression", count: int = 10, at: datetime = NOW,
                key: str = "o-1", **fields) -> Observation:
    return Observation(id=key, kind=EngagementKind(kind), count=count, occurred_at=at, share_id=share_id, **fields)


def nothing_recorded(world: World) -> bool:
    return world.repositories.reports.items == {} and world.publisher.published == []


async def refused(world: World, observed: Observation) -> Implausible:
    with pytest.raises(Implausible) as error:
        await world.engagement.ingest(TENANT, POLLER, observed, NOW)
    assert nothing_recorded(world)
    return error.value


async def test_a_poller_ingests_through_the_entry_point_like_a_webhook(world):
    share = await confirmed_share(world)
    engagement_id = await world.engagement.ingest(TENANT, POLLER, observation(share.id), NOW)
    [(_, envelope)] = world.publisher.published
    assert envelope.id == engagement_id and envelope.data["source"] == "linkedin"
    assert (envelope.data["share_id"], envelope.data["ambassador_id"]) == (share.id, share.ambassador_id)
    assert f"{TENANT}/linkedin-poller/o-1" in world.repositories.reports.items
    with pytest.raises(Problem) as replay:
        await world.engagement.ingest(TENANT, POLLER, observation(share.id), NOW)
    assert replay.value.status == 409


async def test_a_report_on_a_share_never_confirmed_is_refused_by_any_way_of_naming_it(world):
    prepared = await world.prepare()
    for fields in ({"share_id": prepared.id}, {"share_id": None, "tracked_link_code": prepared.tracked_link_code}):
        error = await refused(world, observation(**fields))
        assert error.reason == "share_not_confirmed"
    conversion = observation(None, kind="conversion", count=1, tracked_link_code=prepared.tracked_link_code,
                             conversion_type=ConversionType.APPLICATION)
    assert (await refused(world, conversion)).reason == "share_not_confirmed"
    assert (await refused(world, observation(None, post_url="https://li/nothing"))).reason == "unknown_post"
    assert (await refused(world, observation(None, tracked_link_code="nope"))).field == "tracked_link_code"


@pytest.mark.parametrize(("at", "rule"), [
    (NOW + timedelta(days=2), "occurred_in_the_future"),
    (NOW - timedelta(days=2), "occurred_before_the_share"),
    (datetime(2026, 3, 10, 12), "timestamp_without_time_zone"),
])
async def test_a_report_outside_the_shares_life_is_refused(world, at, rule):
    share = await confirmed_share(world)
    assert (await refused(world, observation(share.id, at=at))).reason == rule


@pytest.mark.parametrize(("kind", "count"), [("impression", 0), ("reaction", -3), ("comment", 10**9),
                                             ("conversion", 10**6)])
async def test_negative_or_absurd_counts_are_refused(world, kind, count):
    share = await confirmed_share(world)
    observed = observation(share.id, kind=kind, count=count, conversion_type="lead" if kind == "conversion" else None)
    assert (await refused(world, observed)).reason == "count_out_of_range"


async def test_replies_beyond_the_comments_received_are_refused_and_counted_nowhere(world):
    share = await confirmed_share(world)
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment", 2, key="c"), NOW)
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment_reply", 2, key="r1"), NOW)
    error = await _refused_after(world, observation(share.id, "comment_reply", 1, key="r2"))
    assert (error.reason, error.field) == ("replies_exceed_comments", "count")
    totals = await world.repositories.totals.get(TENANT, share.id)
    assert (totals.comments, totals.replies) == (2, 2)
    assert [e.data["kind"] for _, e in world.publisher.published] == ["comment", "comment_reply"]


async def _refused_after(world: World, observed: Observation) -> Implausible:
    before = (dict(world.repositories.reports.items), list(world.publisher.published))
    with pytest.raises(Implausible) as error:
        await world.engagement.ingest(TENANT, POLLER, observed, NOW)
    assert (world.repositories.reports.items, world.publisher.published) == before
    return error.value


async def test_comments_count_in_the_totals_only_once_kafka_has_them(world):
    share = await confirmed_share(world)
    world.publisher.failing = True
    with pytest.raises(Problem):
        await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment", 3, key="c"), NOW)
    assert (await world.repositories.totals.get(TENANT, share.id)).comments == 0
    world.publisher.failing = False
    with pytest.raises(Implausible):  # the unpublished comments give no room for replies
        await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment_reply", 1, key="r"), NOW)
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment", 3, key="c"), NOW)  # the retry
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment_reply", 1, key="r"), NOW)
    totals = await world.repositories.totals.get(TENANT, share.id)
    assert (totals.comments, totals.replies) == (3, 1)


async def test_a_reply_retried_after_a_failed_publish_is_counted_once(world):
    share = await confirmed_share(world)
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment", 1, key="c"), NOW)
    world.publisher.failing = True
    with pytest.raises(Problem):
        await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment_reply", 1, key="r"), NOW)
    world.publisher.failing = False
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment_reply", 1, key="r"), NOW)
    totals = await world.repositories.totals.get(TENANT, share.id)
    assert (totals.comments, totals.replies) == (1, 1)


async def test_two_replies_racing_on_one_post_cannot_both_pass_the_comments(world):
    share = await confirmed_share(world)
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment", 2, key="c"), NOW)
    totals = world.repositories.totals
    original = totals.save

    async def save(updated):  # another API instance counts a reply between our read and our write
        totals.save = original
        await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment_reply", 1, key="r1"), NOW)
        return await original(updated)

    totals.save = save
    with pytest.raises(Implausible) as error:  # read again after the lost compare-and-set: 1 + 2 > 2
        await world.engagement.ingest(TENANT, POLLER, observation(share.id, "comment_reply", 2, key="r2"), NOW)
    assert error.value.reason == "replies_exceed_comments"
    stored = await totals.get(TENANT, share.id)
    assert (stored.comments, stored.replies) == (2, 1)


async def test_an_erased_persons_post_is_counted_anonymously(world):
    share = await confirmed_share(world)
    me = share.ambassador_id
    world.repositories.ambassadors.items[(TENANT, me)] = AmbassadorView(tenant=TENANT, ambassador_id=me,
                                                                        status=AmbassadorStatus.ERASED)
    await world.engagement.ingest(TENANT, POLLER, observation(share.id), NOW)
    [(_, envelope)] = world.publisher.published
    assert envelope.data["ambassador_id"] == ERASED and me not in str(envelope.data)


async def test_an_opted_out_persons_earlier_post_is_counted_as_before(world):
    share = await confirmed_share(world)
    me = share.ambassador_id
    world.repositories.ambassadors.items[(TENANT, me)] = AmbassadorView(tenant=TENANT, ambassador_id=me,
                                                                        status=AmbassadorStatus.OPTED_OUT)
    later = NOW + timedelta(days=1)
    await world.engagement.ingest(TENANT, POLLER, observation(share.id, at=later), later)
    [(_, envelope)] = world.publisher.published
    assert envelope.data["ambassador_id"] == me


async def test_a_conversion_needs_its_type(world):
    share = await confirmed_share(world)
    conversion = observation(None, kind="conversion", count=1, tracked_link_code=share.tracked_link_code)
    assert (await refused(world, conversion)).reason == "conversion_type_missing"
    lead = conversion.model_copy(update={"conversion_type": ConversionType.LEAD})
    await world.engagement.ingest(TENANT, POLLER, lead, NOW)
    [(_, envelope)] = world.publisher.published
    assert (envelope.data["kind"], envelope.data["conversion_type"], envelope.data["share_id"]) == \
        ("conversion", "lead", share.id)


def test_the_webhook_refuses_a_timestamp_without_time_zone_at_parsing():
    from pydantic import ValidationError

    from distribution.schemas import EngagementReport

    with pytest.raises(ValidationError):
        EngagementReport.model_validate({"id": "x", "kind": "reaction", "occurred_at": "2026-03-10T12:00:00",
                                         "share_id": "s"})
    assert EngagementReport.model_validate({"id": "x", "kind": "reaction", "share_id": "s",
                                            "occurred_at": "2026-03-10T12:00:00+01:00"}).occurred_at.utcoffset()
