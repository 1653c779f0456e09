"""The feed's index gives exactly the pages of the reference ranking (`rank_feed` then `after_position`)."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from advocacy_common.events import AmbassadorProfile, Audience, NetworkPresence
from distribution.models.projections import (
    SCORE_SCALE, AmbassadorStatus, AmbassadorView, Audiences, ContentView, FeedIndex, FeedPosition, Recipient,
    Targeting, after_position, rank_feed, targeting_misses,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TOPICS = ["energy", "Data", "hr", "r&d", "safety"]
NETWORKS = ["linkedin", "x", "xing"]


def random_content(pick: random.Random, n: int) -> ContentView:
    audience = Audience(teams=pick.sample(["ops", "sales", "IT "], pick.randint(0, 2)),
                        locations=pick.sample(["lyon", "Paris"], pick.randint(0, 1)),
                        languages=pick.sample(["fr", "en", "de"], pick.randint(0, 1) if n % 4 == 0 else 0),
                        personas=pick.sample(["expert", "talent"], pick.randint(0, 1)),
                        topics=pick.sample(TOPICS, pick.randint(0, 1)))
    return ContentView(
        tenant="t", content_id=f"c{n:03d}", version=1, topics=pick.sample(TOPICS, pick.randint(0, 3)),
        language=pick.choice(["fr", "en", "de", ""]), audience=audience, networks=pick.sample(NETWORKS, pick.randint(1, 2)),
        # whole hours, so that ties of score are frequent; some in the future, some expired, some retired
        publish_at=NOW - timedelta(hours=pick.randint(-3, 200)) if n % 17 else None,
        expires_at=NOW - timedelta(hours=1) if n % 13 == 0 else None, retired=n % 19 == 0)


def random_ambassador(pick: random.Random) -> AmbassadorView:
    profile = AmbassadorProfile(persona=pick.choice(["expert", "talent"]), topics=pick.sample(TOPICS, pick.randint(0, 3)),
                                languages=pick.sample(["fr", "en"], pick.randint(0, 2)),
                                team_id=pick.choice(["ops", "sales", "it"]), location=pick.choice(["paris", "lyon", None]),
                                networks=[NetworkPresence(network=n, audience_size=10)
                                          for n in pick.sample(NETWORKS, pick.randint(1, 3))])
    return AmbassadorView(tenant="t", ambassador_id="a", status=AmbassadorStatus.OPTED_IN, profile=profile)


@pytest.mark.parametrize("seed", range(40))
def test_pages_equal_the_reference_ranking(seed):
    pick = random.Random(seed)
    contents = [random_content(pick, n) for n in range(pick.randint(0, 120))]
    ambassador = random_ambassador(pick)
    shared = {c.content_id for c in pick.sample(contents, min(5, len(contents)))}
    scored_at = NOW - timedelta(minutes=pick.randint(0, 600))
    index = FeedIndex(contents)
    reference = rank_feed(contents, ambassador, NOW, shared, scored_at)
    limit = pick.randint(1, 12)
    position = None
    for _ in range(30):  # every page until the end, through cursors as the feed does
        expected = after_position(reference, position)[:limit + 1]
        assert index.page(ambassador, NOW, shared, scored_at, position, limit + 1) == expected
        if len(expected) <= limit:
            break
        score, last = expected[limit - 1]
        position = FeedPosition(scored_at, round(score * SCORE_SCALE), last.content_id)


@pytest.mark.parametrize("seed", range(20))
def test_the_bit_sets_of_audiences_say_what_the_targeting_rule_says(seed):
    pick = random.Random(1000 + seed)
    contents = [random_content(pick, n) for n in range(200)]
    audiences = Audiences([Targeting.of(c) for c in contents])
    for _ in range(20):
        ambassador = random_ambassador(pick)
        targeted = audiences.targeting(Recipient.of(ambassador))
        assert [bool(targeted >> i & 1) for i in range(len(contents))] == \
            [not targeting_misses(c, ambassador) for c in contents]


def test_an_empty_index_has_empty_pages():
    pick = random.Random(1)
    assert FeedIndex([]).page(random_ambassador(pick), NOW, set(), NOW, None, 10) == []


@pytest.mark.parametrize("seed", range(10))
def test_one_index_serves_many_ambassadors_from_its_kept_ranking_starts(seed, monkeypatch):
    # The per-topics starts are kept per index: ambassadors with the same topics share one, and a full store is
    # emptied then refilled, without changing any page.
    from distribution.models import projections

    monkeypatch.setattr(projections, "RANKING_STARTS_KEPT", 3)
    pick = random.Random(1000 + seed)
    contents = [random_content(pick, n) for n in range(pick.randint(30, 150))]
    index = FeedIndex(contents)
    for _ in range(25):
        ambassador = random_ambassador(pick)
        shared = {c.content_id for c in pick.sample(contents, 3)}
        expected = rank_feed(contents, ambassador, NOW, shared, NOW)[:8]
        assert index.page(ambassador, NOW, shared, NOW, None, 8) == expected
        assert len(index._starts) <= 3
