"""X: post URLs to post ids (pure), and the client of a post's public metrics with the tenant's app-only
bearer token (`GET /2/tweets?ids=...&tweet.fields=public_metrics`, X API v2; see the README for the links).
X bills per request: every call is counted against the tenant's daily budget before it is made."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from advocacy_common.events import EngagementKind

from .calls import get
from .errors import NetworkError, NotFound

# public_metrics fields and the kind each feeds; quotes are reshares with words, counted as reshares.
METRICS: dict[str, EngagementKind] = {
    "impression_count": EngagementKind.IMPRESSION,
    "like_count": EngagementKind.REACTION,
    "reply_count": EngagementKind.COMMENT,
    "retweet_count": EngagementKind.RESHARE,
    "quote_count": EngagementKind.RESHARE,
}
_HOSTS = re.compile(r"^(www\.|mobile\.)?(x|twitter)\.com$")
_STATUS = re.compile(r"^/(?:[A-Za-z0-9_]{1,15}|i(?:/web)?)/status(?:es)?/(\d{1,25})(?:/.*)?$")


class NotAPostUrl(ValueError):
    pass


def post_id(url: str) -> str:
    """The id of a post from `x.com/<user>/status/<id>` (or twitter.com, mobile., `/i/web/status/`)."""
    parts = urlsplit(url.strip() if "://" in url else f"https://{url.strip()}")
    if parts.scheme not in ("http", "https") or not _HOSTS.match((parts.hostname or "").lower()):
        raise NotAPostUrl("is not an x.com or twitter.com address")
    found = _STATUS.match(parts.path)
    if not found:
        raise NotAPostUrl("is not the address of a post (x.com/<user>/status/<id>)")
    return found.group(1)


class XApi:
    def __init__(self, http: httpx.AsyncClient, api_base: str = "https://api.x.com"):
        self.http = http
        self.api_base = api_base

    async def post_totals(self, bearer_token: str, post: str) -> dict[str, int]:
        response = await get(self.http, f"{self.api_base}/2/tweets",
                             params={"ids": post, "tweet.fields": "public_metrics"},
                             headers={"Authorization": f"Bearer {bearer_token}"})
        try:
            body = response.json()
        except ValueError:
            raise NetworkError("the answer is not JSON") from None
        # A post that does not exist (or was deleted) is a 200 with an `errors` entry and no `data` for it.
        for item in body.get("data") or []:
            if isinstance(item, dict) and item.get("id") == post:
                metrics = item.get("public_metrics") or {}
                return {name: int(metrics.get(name, 0)) for name in METRICS}
        raise NotFound("the post is not visible on X")
