"""The feed's body, its items rendered once per content: byte for byte what the `Feed` schema dumps."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from distribution import feed_rendering
from distribution.feed_rendering import feed_item, feed_json
from distribution.models.projections import INELIGIBILITY_REASONS, ContentView, FeedPage, Suggestion
from distribution.schemas import Feed

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NETWORKS = ["linkedin", "x", "xing"]


def reference(page: FeedPage) -> bytes:
    return Feed(items=[feed_item(s, s.score) for s in page.items], next_cursor=page.next_cursor, reason=page.reason,
                message=page.message).model_dump_json().encode()


def content(tenant: str, content_id: str, version: int) -> ContentView:
    """One content version: the same every time it is asked for (a version never changes)."""
    pick = random.Random(f"{tenant}/{content_id}/{version}")
    texts = {network: f"Texte «{content_id}» pour {network} \"cité\" \n\u2014 ok"
             for network in pick.sample(NETWORKS, 2)}
    return ContentView(tenant=tenant, content_id=content_id, version=version,
                       title=f"Title {pick.random()} é ✓", link_url=f"https://example.com/{content_id}?a=1&b=2",
                       topics=pick.sample(["energy", "data"], pick.randint(0, 2)), language="fr",
                       suggested_texts=texts, networks=NETWORKS, disclosure_line=pick.choice([None, "#ad"]),
                       publish_at=NOW - timedelta(hours=pick.randint(0, 500), microseconds=pick.randint(0, 999)),
                       expires_at=pick.choice([None, NOW + timedelta(days=3)]))


def random_suggestion(pick: random.Random, n: int) -> Suggestion:
    content_version = content(pick.choice(["t", "u"]), f"c{n % 7}", pick.randint(1, 2))
    mine = set(pick.sample(NETWORKS, pick.randint(1, 3)))
    score = pick.choice([0.5, 1.0, 0.35, 0.000213, 0.712345, round(pick.random(), 6), 0.7, 0.3])
    return Suggestion(content=content_version, networks=[x for x in content_version.networks if x in mine],
                      suggested_texts={k: v for k, v in content_version.suggested_texts.items() if k in mine},
                      score=score,
                      disclosure_lines=pick.sample(["#ad", "Sponsored by ACME"], pick.randint(0, 2)))


@pytest.mark.parametrize("seed", range(30))
def test_the_body_is_what_the_feed_schema_dumps_also_from_kept_fragments(seed):
    pick = random.Random(seed)
    for _ in range(3):  # the second and third pages reuse fragments of the first
        page = FeedPage(items=[random_suggestion(pick, n) for n in range(pick.randint(0, 25))],
                        next_cursor=pick.choice([None, "abc-_=="]))
        assert feed_json(page) == reference(page)


def test_empty_feeds_and_their_reasons_are_what_the_schema_dumps():
    for reason in [None, *INELIGIBILITY_REASONS]:
        page = FeedPage(reason=reason)
        assert feed_json(page) == reference(page)


def test_the_same_content_for_other_networks_or_another_version_is_another_fragment(monkeypatch):
    pick = random.Random(7)
    one = random_suggestion(pick, 1)
    narrower = Suggestion(content=one.content, networks=one.networks[:1], suggested_texts={}, score=one.score,
                          disclosure_lines=one.disclosure_lines)
    newer = Suggestion(content=one.content.model_copy(update={"version": 9, "title": "Changed"}), networks=one.networks,
                       suggested_texts=one.suggested_texts, score=0.25, disclosure_lines=one.disclosure_lines)
    # A text for a network I use that the content does not list: same networks, other texts.
    texts_beyond = Suggestion(content=one.content, networks=one.networks, suggested_texts={"mastodon": "toot"},
                              score=one.score, disclosure_lines=one.disclosure_lines)
    for suggestion in (one, narrower, newer, texts_beyond, one):
        page = FeedPage(items=[suggestion])
        assert feed_json(page) == reference(page)
    assert b"Changed" in feed_json(FeedPage(items=[newer])) and b"Changed" not in feed_json(FeedPage(items=[one]))
    monkeypatch.setattr(feed_rendering, "KEPT", 2)  # full: dropped, then rendered again
    monkeypatch.setattr(feed_rendering, "_fragments", {})
    pages = [FeedPage(items=[random_suggestion(pick, n)]) for n in range(6)]
    assert [feed_json(p) for p in pages] == [reference(p) for p in pages]
    assert len(feed_rendering._fragments) <= 2
