"""Matching, ranking, eligibility, text checks, quiet hours and slots: pure rules."""

from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.events import AmbassadorProfile, Audience, Network, NetworkPresence, QuietHours
from distribution.models.projections import (
    SCORE_SCALE, AmbassadorStatus, AmbassadorView, CharterView, ContentView, FeedPosition, after_position, feed_score,
    ineligibility, rank_feed, targeting_misses,
)
from distribution.models.sharing import (
    Refusal, check_text, check_weekly_limit, in_quiet_hours, recommend_slot, required_disclosures,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def ambassador(status=AmbassadorStatus.OPTED_IN, accepted=1, **profile) -> AmbassadorView:
    values = dict(persona="expert", topics=["energy", "data"], languages=["fr", "en"], team_id="ops",
                  location="lyon", networks=[NetworkPresence(network="linkedin", audience_size=500)])
    values.update(profile)
    return AmbassadorView(tenant="t", ambassador_id="a", status=status, accepted_charter_version=accepted,
                          profile=AmbassadorProfile(**values))


def content(content_id="c", **values) -> ContentView:
    defaults = dict(tenant="t", content_id=content_id, version=1, topics=["energy"], language="fr",
                    networks=["linkedin"], publish_at=NOW - timedelta(hours=1), expires_at=NOW + timedelta(days=1))
    defaults.update(values)
    return ContentView(**defaults)


@pytest.mark.parametrize(("overrides", "miss"), [
    ({"audience": Audience(teams=["sales"])}, "team"),
    ({"audience": Audience(locations=["paris"])}, "location"),
    ({"language": "de"}, "language"),
    ({"audience": Audience(languages=["de"])}, "language"),
    ({"audience": Audience(personas=["talent"])}, "persona"),
    ({"audience": Audience(topics=["hr"])}, "topics"),
    ({"networks": ["tiktok"]}, "network"),
])
def test_each_targeting_axis_excludes(overrides, miss):
    assert targeting_misses(content(**overrides), ambassador()) == [miss]


def test_topics_target_through_the_audience_only_and_a_named_axis_needs_a_value():
    assert targeting_misses(content(topics=["hr"]), ambassador()) == []  # the content's topics only rank
    assert targeting_misses(content(audience=Audience(topics=["Energy"])), ambassador()) == []
    assert targeting_misses(content(audience=Audience(topics=["energy"])), ambassador(topics=[])) == ["topics"]
    # Languages: an audience naming languages needs one of mine, even when I list none; listing none
    # otherwise admits any item language.
    assert targeting_misses(content(audience=Audience(languages=["fr"])), ambassador(languages=[])) == ["language"]
    assert targeting_misses(content(language="de"), ambassador(languages=[])) == []


def test_empty_audience_means_anyone():
    assert targeting_misses(content(audience=Audience(), topics=[]), ambassador()) == []
    assert targeting_misses(content(audience=Audience(teams=["ops"], personas=["expert"])), ambassador()) == []


def test_ranking_prefers_topic_affinity_then_freshness_and_skips_shared_or_inactive():
    contents = [content("half", topics=["energy", "hr"]), content("full", topics=["energy", "data"]),
                content("old-full", topics=["energy", "data"], publish_at=NOW - timedelta(days=9)),
                content("shared"), content("expired", expires_at=NOW - timedelta(seconds=1)),
                content("retired", retired=True), content("future", publish_at=NOW + timedelta(hours=1))]
    ranked = rank_feed(contents, ambassador(), NOW, shared_content_ids={"shared"})
    assert [c.content_id for _, c in ranked] == ["full", "old-full", "half"]
    position = FeedPosition(NOW, round(ranked[0][0] * SCORE_SCALE), "full")
    assert after_position(ranked, position)[0][1].content_id == "old-full"


def test_freshness_halves_every_three_days():
    fresh = feed_score(content(topics=[]), ambassador(), NOW - timedelta(hours=1))
    old = feed_score(content(topics=[]), ambassador(), NOW + timedelta(hours=71))
    assert fresh == pytest.approx(0.7 * 0.5 + 0.3) and old == pytest.approx(0.7 * 0.5 + 0.3 * 0.5)


@pytest.mark.parametrize(("view", "charter_version", "reason"), [
    (None, 0, "not_opted_in"),
    (ambassador(AmbassadorStatus.UNKNOWN), 0, "not_opted_in"),
    (ambassador(AmbassadorStatus.OPTED_OUT), 0, "opted_out"),
    (ambassador(AmbassadorStatus.ERASED), 0, "erased"),
    (ambassador(accepted=1), 2, "charter_pending"),
    (ambassador(accepted=2), 2, None),
])
def test_eligibility(view, charter_version, reason):
    assert ineligibility(view, CharterView(current_version=charter_version)) == reason


def test_length_limits_per_network():
    check_text("x" * 256, Network.X, [])
    with pytest.raises(Refusal) as refused:
        check_text("x" * 257, Network.X, [])
    assert (refused.value.rule, refused.value.score, refused.value.threshold) == ("length_limit", 257, 256)
    check_text("x" * 3000, Network.LINKEDIN, [])


def test_disclosure_lines_from_campaign_and_charter():
    lines = required_disclosures(content(disclosure_line="#AcmeJobs"),
                                 CharterView(disclosure_required=True, disclosure_line="#IWorkAtAcme"))
    assert lines == ["#AcmeJobs", "#IWorkAtAcme"]
    check_text("Come work with me #acmejobs #iworkatacme", Network.LINKEDIN, lines)
    with pytest.raises(Refusal, match="#IWorkAtAcme"):
        check_text("Come work with me #AcmeJobs", Network.LINKEDIN, lines)
    assert required_disclosures(content(), CharterView(disclosure_required=False, disclosure_line="#x")) == []


def test_weekly_limit():
    check_weekly_limit(2, 3)
    with pytest.raises(Refusal) as refused:
        check_weekly_limit(3, 3)
    assert refused.value.rule == "weekly_limit"


def test_quiet_hours_across_midnight_in_local_time():
    quiet = QuietHours(start="22:00", end="07:00")
    assert in_quiet_hours(datetime(2026, 3, 10, 21, 30, tzinfo=UTC), quiet, "Europe/Paris")  # 22:30 Paris
    assert in_quiet_hours(datetime(2026, 3, 10, 5, 30, tzinfo=UTC), quiet, "Europe/Paris")   # 06:30 Paris
    assert not in_quiet_hours(datetime(2026, 3, 10, 6, 30, tzinfo=UTC), quiet, "Europe/Paris")
    assert not in_quiet_hours(NOW, None, "UTC")
    assert in_quiet_hours(datetime(2026, 3, 10, 12, 30, tzinfo=UTC), QuietHours(start="12:00", end="14:00"),
                          "Not/AZone")  # unknown zone falls back to UTC


def test_slots_follow_each_other_and_avoid_quiet_hours():
    spacing = timedelta(minutes=30)
    publish = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    now = datetime(2026, 3, 10, 9, 10, tzinfo=UTC)
    assert recommend_slot(now, publish, set(), spacing, None, "UTC") == datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    held = {datetime(2026, 3, 10, 9, 30, tzinfo=UTC), datetime(2026, 3, 10, 10, 0, tzinfo=UTC),
            datetime(2026, 3, 10, 10, 30, tzinfo=UTC)}
    assert recommend_slot(now, publish, held, spacing, None, "UTC") == datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    # A slot in the middle given back (its prepare timed out) is the next one recommended.
    given_back = held - {datetime(2026, 3, 10, 10, 0, tzinfo=UTC)}
    assert recommend_slot(now, publish, given_back, spacing, None, "UTC") == datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    late = datetime(2026, 3, 10, 21, 50, tzinfo=UTC)
    slot = recommend_slot(late, publish, set(), spacing, QuietHours(start="22:00", end="07:00"), "UTC")
    assert slot == datetime(2026, 3, 11, 7, 0, tzinfo=UTC)


def test_targeting_ignores_the_case_other_services_write_labels_in():
    from distribution.models.projections import folded

    assert folded(["R&D ", None, "Research"]) == {"r&d", "research"}
