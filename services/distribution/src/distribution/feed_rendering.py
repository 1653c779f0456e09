"""The feed's response body: the bytes `Feed.model_dump_json()` gives, each item's rendered once.

An item's body is the content's fields as my networks narrow them, the disclosure lines and my score.
Only the score is the caller's: the rest is the tenant's content (the same for everyone who uses the same
networks), so it is validated and rendered once per content version, networks and lines (`FeedItem`, the
schema of the OpenAPI document) and the score is spliced in per request. Building and dumping the 20
`FeedItem` models of a page per request was a tenth of the api's CPU per feed (py-spy, 50 clients). The
kept fragments hold content only, never anything of a person, and a content's new version is a new key.
"""

from __future__ import annotations

from pydantic_core import to_json

from .models.projections import FeedPage, Suggestion
from .schemas import Feed, FeedItem

KEPT = 20_000  # fragments per process (~0.5 kB each); all dropped when full, then rendered again as asked
_SCORE_PLACEHOLDER = 0.0
_SCORE_TAIL = b"0.0}"  # how the placeholder score ends a rendered item (score is FeedItem's last field)
_EMPTY_ITEMS = b'{"items":[]'

_fragments: dict[tuple, bytes] = {}


def feed_json(page: FeedPage) -> bytes:
    """Exactly `Feed(items=[FeedItem(...) per suggestion], ...).model_dump_json()`."""
    rest = Feed(items=[], next_cursor=page.next_cursor, reason=page.reason, message=page.message).model_dump_json()
    encoded = rest.encode()
    assert encoded.startswith(_EMPTY_ITEMS)
    items = b",".join(_item(suggestion) for suggestion in page.items)
    return b'{"items":[' + items + b"]" + encoded[len(_EMPTY_ITEMS):]


def _item(suggestion: Suggestion) -> bytes:
    content = suggestion.content
    key = (content.tenant, content.content_id, content.version, tuple(suggestion.networks),
           tuple(suggestion.suggested_texts), tuple(suggestion.disclosure_lines))
    fragment = _fragments.get(key)
    if fragment is None:
        if len(_fragments) >= KEPT:
            _fragments.clear()
        rendered = feed_item(suggestion, _SCORE_PLACEHOLDER).model_dump_json().encode()
        assert rendered.endswith(_SCORE_TAIL)
        fragment = _fragments[key] = rendered[:-len(_SCORE_TAIL)]
    return fragment + to_json(suggestion.score) + b"}"


def feed_item(suggestion: Suggestion, score: float) -> FeedItem:
    content = suggestion.content
    return FeedItem(content_id=content.content_id, campaign_id=content.campaign_id, title=content.title,
                    link_url=content.link_url, topics=content.topics, language=content.language,
                    networks=suggestion.networks, suggested_texts=suggestion.suggested_texts,
                    disclosure_line=content.disclosure_line, disclosure_lines=suggestion.disclosure_lines,
                    publish_at=content.publish_at, expires_at=content.expires_at, score=score)
