"""LinkedIn: post URLs to post URNs (pure), and the read-only client of the member's own post analytics.

Documentation followed (see the service README for the links): Member Post Statistics
(`GET /rest/memberCreatorPostAnalytics`, finder `entity`, `queryType`, `aggregation=TOTAL`, Rest.li 2.0
with the `LinkedIn-Version: YYYYMM` and `X-Restli-Protocol-Version: 2.0.0` headers), the OAuth 2.0
authorization code flow (`/oauth/v2/authorization`, `/oauth/v2/accessToken`) and Sign In with LinkedIn
using OpenID Connect (`GET /v2/userinfo`, whose `sub` is the member's id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx

from advocacy_common.events import EngagementKind

from .calls import get, post_form
from .errors import NetworkError, NotFound

# The five metrics of a member's post and the engagement kind each feeds.
METRICS: dict[str, EngagementKind] = {
    "IMPRESSION": EngagementKind.IMPRESSION,
    "MEMBERS_REACHED": EngagementKind.MEMBERS_REACHED,
    "REACTION": EngagementKind.REACTION,
    "COMMENT": EngagementKind.COMMENT,
    "RESHARE": EngagementKind.RESHARE,
}
MAX_PAGES = 20
URN = re.compile(r"^urn:li:(share|ugcPost|activity):(\d{1,30})$")
_IN_PATH = re.compile(r"urn:li:(share|ugcPost|activity):(\d{1,30})")
_IN_SLUG = re.compile(r"[-_](activity|ugcPost|share)-(\d{6,30})(?:-|$)")
_HOSTS = re.compile(r"^([a-z]{2,3}\.|www\.)?linkedin\.com$")


class NotAPostUrl(ValueError):
    pass


@dataclass(frozen=True)
class PostUrn:
    kind: str  # share, ugcPost or activity
    number: str

    def __str__(self) -> str:
        return f"urn:li:{self.kind}:{self.number}"

    def candidates(self) -> list[str]:
        """The URNs the analytics API may know this post by: it takes share and ugcPost URNs only, so an
        activity id (what a post's public URL shows) is tried as both; the API's answer decides."""
        if self.kind == "activity":
            return [f"urn:li:share:{self.number}", f"urn:li:ugcPost:{self.number}"]
        return [str(self)]


def post_urn(url: str) -> PostUrn:
    """The post a LinkedIn URL points at: `/feed/update/urn:li:<kind>:<id>` (also URL-encoded, and under
    `/embed`), or `/posts/<author>_<slug>-activity-<id>-<code>`. Anything else (profiles, articles, short
    `lnkd.in` links that need fetching) is refused."""
    text = url.strip()
    if URN.match(text):
        kind, number = URN.match(text).groups()  # type: ignore[union-attr]
        return PostUrn(kind, number)
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.scheme not in ("http", "https") or not _HOSTS.match((parts.hostname or "").lower()):
        raise NotAPostUrl("is not a linkedin.com address")
    path = unquote(parts.path)
    if path.startswith(("/feed/update/", "/embed/feed/update/")):
        found = _IN_PATH.search(path)
    elif path.startswith("/posts/"):
        found = _IN_SLUG.search(path.rstrip("/"))
    else:
        found = None
    if not found:
        raise NotAPostUrl("is not the address of a LinkedIn post (/feed/update/urn:li:... or /posts/...)")
    return PostUrn(found.group(1), found.group(2))


@dataclass(frozen=True)
class Grant:
    access_token: str
    expires_at: datetime
    scope: str | None


@dataclass(frozen=True)
class LinkedInEndpoints:
    oauth_base: str = "https://www.linkedin.com/oauth/v2"
    api_base: str = "https://api.linkedin.com"
    version: str = "202606"  # LinkedIn-Version, YYYYMM: versions are supported for about a year

    @property
    def authorize(self) -> str:
        return f"{self.oauth_base}/authorization"


class LinkedInApi:
    """Read-only calls with a member's token; every error is one of `errors.py`."""

    def __init__(self, http: httpx.AsyncClient, endpoints: LinkedInEndpoints):
        self.http = http
        self.endpoints = endpoints

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "LinkedIn-Version": self.endpoints.version,
                "X-Restli-Protocol-Version": "2.0.0", "Accept": "application/json"}

    async def exchange_code(self, *, code: str, verifier: str, client_id: str, client_secret: str,
                            redirect_uri: str, now: datetime) -> Grant:
        response = await post_form(self.http, f"{self.endpoints.oauth_base}/accessToken", {
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "client_id": client_id,
            "client_secret": client_secret, "code_verifier": verifier})
        body = _json(response)
        try:
            return Grant(str(body["access_token"]), now + timedelta(seconds=int(body["expires_in"])), body.get("scope"))
        except (KeyError, TypeError, ValueError):
            raise NetworkError("the token answer has no access_token / expires_in") from None

    async def member_id(self, token: str) -> str:
        body = _json(await get(self.http, f"{self.endpoints.api_base}/v2/userinfo",
                               headers={"Authorization": f"Bearer {token}"}))
        if not isinstance(body.get("sub"), str) or not body["sub"]:
            raise NetworkError("userinfo has no sub")
        return body["sub"]

    async def metric_total(self, token: str, urn: str, metric: str) -> int:
        """The lifetime total of one metric of one of the member's posts (NotFound: not theirs)."""
        # Rest.li 2.0: the entity is a union `(share:<urn>)` whose URN is percent-encoded, parentheses kept.
        kind = urn.split(":")[2]
        url = (f"{self.endpoints.api_base}/rest/memberCreatorPostAnalytics?q=entity"
               f"&entity=({kind}:{quote(urn, safe='')})&queryType={metric}&aggregation=TOTAL")
        total, seen = 0, set()
        while url and url not in seen and len(seen) < MAX_PAGES:  # a link back, or no end: stop
            seen.add(url)
            body = _json(await get(self.http, url, headers=self._headers(token)))
            for element in body.get("elements") or []:
                total += _count(element)
            url = _next_page(self.endpoints.api_base, body)
        return total

    async def post_totals(self, token: str, urn: str) -> dict[str, int]:
        return {metric: await self.metric_total(token, urn, metric) for metric in METRICS}

    async def owned_post(self, token: str, urn: PostUrn) -> str:
        """The URN under which the analytics API knows this post of the member; NotFound when none does
        (a post of someone else, or no post at all)."""
        for candidate in urn.candidates():
            try:
                await self.metric_total(token, candidate, "IMPRESSION")
            except NotFound:
                continue
            return candidate
        raise NotFound("not a post of the connected member")


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise NetworkError("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise NetworkError("the answer is not a JSON object")
    return body


def _count(element: object) -> int:
    if not isinstance(element, dict) or not isinstance(element.get("count"), int) or element["count"] < 0:
        raise NetworkError("an analytics element has no count")
    return element["count"]


def _next_page(api_base: str, body: dict) -> str | None:
    """Rest.li paging: follow the `next` link when the answer has one."""
    paging = body.get("paging") or {}
    for link in paging.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str):
            return urljoin(api_base + "/", link["href"])
    return None
