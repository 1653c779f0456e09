"""Fakes of LinkedIn's and X's APIs, served as real HTTP servers on loopback (see `live_server.serving`).

They implement the documented request and response shapes our connectors use, and check what the real
APIs check, so that a connector that sends the wrong thing fails here too:

- LinkedIn OAuth 2.0 authorization code flow (`GET /oauth/v2/authorization` answers 302 to the redirect URL
  with `code` and `state`; `POST /oauth/v2/accessToken` checks client, secret, redirect URL, code and the
  PKCE verifier, answers `access_token`, `expires_in`, `scope`), OpenID Connect `GET /v2/userinfo` (`sub`),
  and Member Post Statistics `GET /rest/memberCreatorPostAnalytics?q=entity&entity=(share:<urn>)&queryType=
  <METRIC>&aggregation=TOTAL` (requires `LinkedIn-Version: YYYYMM` and `X-Restli-Protocol-Version: 2.0.0`;
  answers `{"paging": {...}, "elements": [{"count": n, "metricType": {...}}]}`; 403 for a post that is not
  the member's, 401 for a revoked or expired token, 429 with `Retry-After` when told to).
- X API v2 `GET /2/tweets?ids=...&tweet.fields=public_metrics` with an app-only bearer token (`data[]` with
  `public_metrics`, `errors[]` for an unknown id, 401 for a wrong token, 429 with `x-rate-limit-reset`).

Totals are set by the test at will (also downwards: a network correcting itself).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

LINKEDIN_METRICS = ("IMPRESSION", "MEMBERS_REACHED", "REACTION", "COMMENT", "RESHARE")
X_METRICS = ("impression_count", "like_count", "reply_count", "retweet_count", "quote_count", "bookmark_count")
ENTITY = re.compile(r"^\((share|ugcPost):(urn:li:(?:share|ugcPost):\d+)\)$")


@dataclass
class Throttle:
    """The next `times` calls answer 429 with this Retry-After."""

    times: int = 0
    retry_after: int = 1

    def take(self) -> bool:
        if self.times > 0:
            self.times -= 1
            return True
        return False


@dataclass
class FakeLinkedIn:
    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    redirect_uris: set[str] = field(default_factory=lambda: {"https://app.example.com/connections/linkedin"})
    token_lifetime: int = 60 * 24 * 3600  # 60 days, as LinkedIn's member tokens
    posts: dict[str, dict] = field(default_factory=dict)  # urn -> {"author": sub, "totals": {...}}
    tokens: dict[str, dict] = field(default_factory=dict)  # token -> {"sub", "expires", "revoked"}
    codes: dict[str, dict] = field(default_factory=dict)
    throttle: Throttle = field(default_factory=Throttle)
    page_size: int = 10
    calls: list[dict] = field(default_factory=list)  # every analytics request: path, query, headers

    # --- what the test does ---------------------------------------------------------------------

    def publish(self, author: str, number: str, kind: str = "share", **totals: int) -> str:
        urn = f"urn:li:{kind}:{number}"
        self.posts[urn] = {"author": author, "totals": dict.fromkeys(LINKEDIN_METRICS, 0)}
        self.set_totals(urn, **totals)
        return urn

    def set_totals(self, urn: str, **totals: int) -> None:
        self.posts[urn]["totals"].update(totals)

    def revoke_all(self, sub: str) -> None:
        for token in self.tokens.values():
            if token["sub"] == sub:
                token["revoked"] = True

    def analytics_calls(self) -> list[dict]:
        return [c for c in self.calls if c["path"] == "/rest/memberCreatorPostAnalytics"]

    # --- the API ----------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth/v2/authorization", self.authorize),
            Route("/oauth/v2/accessToken", self.access_token, methods=["POST"]),
            Route("/v2/userinfo", self.userinfo),
            Route("/rest/memberCreatorPostAnalytics", self.analytics),
        ])

    async def authorize(self, request: Request) -> Response:
        """The consent page, already accepted by member `login_as` (a test-only parameter: who is signed in)."""
        q = request.query_params
        problems = []
        if q.get("response_type") != "code":
            problems.append("response_type")
        if q.get("client_id") != self.client_id:
            problems.append("client_id")
        if q.get("redirect_uri") not in self.redirect_uris:
            problems.append("redirect_uri")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problems.append("pkce")
        scopes = (q.get("scope") or "").split()
        if "w_member_social" in scopes or "r_member_postAnalytics" not in scopes:
            problems.append("scope")
        if not q.get("state"):
            problems.append("state")
        if problems:
            return JSONResponse({"error": "invalid_request", "error_description": ",".join(problems)}, 400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"redirect_uri": q["redirect_uri"], "challenge": q["code_challenge"],
                            "sub": q.get("login_as", "member-1"), "scope": ",".join(scopes)}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def access_token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return JSONResponse({"error": "invalid_request"}, 400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = self.codes.pop(str(form.get("code")), None)
        if form.get("grant_type") != "authorization_code" or grant is None \
                or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, 400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "code_verifier"}, 400)
        token = "AQ" + secrets.token_urlsafe(24)
        self.tokens[token] = {"sub": grant["sub"], "expires": time.time() + self.token_lifetime, "revoked": False}
        return JSONResponse({"access_token": token, "expires_in": self.token_lifetime, "scope": grant["scope"],
                             "token_type": "Bearer", "id_token": "not-checked-here"})

    def _member(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        token = self.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
        if token is None or token["revoked"] or token["expires"] < time.time():
            return None
        return token["sub"]

    async def userinfo(self, request: Request) -> Response:
        member = self._member(request)
        if member is None:
            return JSONResponse({"status": 401, "serviceErrorCode": 65600, "message": "Invalid access token"}, 401)
        return JSONResponse({"sub": member, "name": "Test Member", "email_verified": True, "locale": "en_US"})

    async def analytics(self, request: Request) -> Response:
        # The raw query: Rest.li 2.0 keeps the parentheses of the union and percent-encodes the URN.
        raw = dict(part.split("=", 1) for part in urlsplit(str(request.url)).query.split("&") if "=" in part)
        self.calls.append({"path": request.url.path, "query": raw, "headers": dict(request.headers)})
        if not re.fullmatch(r"\d{6}", request.headers.get("linkedin-version", "")) \
                or request.headers.get("x-restli-protocol-version") != "2.0.0":
            return JSONResponse({"status": 426, "code": "NONEXISTENT_VERSION",
                                 "message": "Requested version is not active"}, 426)
        if self.throttle.take():
            return JSONResponse({"status": 429, "message": "Resource level throttle limit reached"}, 429,
                                headers={"Retry-After": str(self.throttle.retry_after)})
        member = self._member(request)
        if member is None:
            return JSONResponse({"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN",
                                 "message": "Invalid access token"}, 401)
        entity = ENTITY.match(unquote(raw.get("entity", "")).replace("%3A", ":"))
        metric, aggregation = raw.get("queryType"), raw.get("aggregation")
        if raw.get("q") != "entity" or entity is None or metric not in LINKEDIN_METRICS or aggregation != "TOTAL":
            return JSONResponse({"status": 400, "message": "Invalid query parameters"}, 400)
        urn = entity.group(2)
        if entity.group(1) != urn.split(":")[2]:
            return JSONResponse({"status": 400, "message": "Entity type does not match its URN"}, 400)
        post = self.posts.get(urn)
        if post is None or post["author"] != member:
            return JSONResponse({"status": 403, "serviceErrorCode": 100,
                                 "message": "Not enough permissions to access: memberCreatorPostAnalytics"}, 403)
        elements = [{"count": post["totals"][metric], "metricType": {
            "com.linkedin.adsexternalapi.memberanalytics.v1.CreatorPostAnalyticsMetricTypeV1": metric}}]
        start, count = int(raw.get("start", 0)), int(raw.get("count", self.page_size))
        page = elements[start:start + count]
        links = []
        if start + count < len(elements):
            query = {**raw, "start": str(start + count), "count": str(count)}
            links.append({"rel": "next", "type": "application/json",
                          "href": "/rest/memberCreatorPostAnalytics?" + "&".join(f"{k}={v}" for k, v in query.items())})
        return JSONResponse({"paging": {"start": start, "count": count, "total": len(elements), "links": links},
                             "elements": page})


@dataclass
class FakeX:
    bearer_token: str = "fake-x-app-bearer"
    posts: dict[str, dict] = field(default_factory=dict)  # id -> public_metrics
    throttle: Throttle = field(default_factory=Throttle)
    requests: int = 0

    def publish(self, post_id: str, **metrics: int) -> None:
        self.posts[post_id] = {**dict.fromkeys(X_METRICS, 0), **metrics}

    def set_metrics(self, post_id: str, **metrics: int) -> None:
        self.posts[post_id].update(metrics)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/2/tweets", self.tweets)])

    async def tweets(self, request: Request) -> Response:
        self.requests += 1
        if request.headers.get("authorization") != f"Bearer {self.bearer_token}":
            return JSONResponse({"title": "Unauthorized", "type": "about:blank", "status": 401,
                                 "detail": "Unauthorized"}, 401)
        if self.throttle.take():
            return JSONResponse({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                                 "status": 429}, 429,
                                headers={"x-rate-limit-reset": str(int(time.time()) + self.throttle.retry_after)})
        query = parse_qs(urlsplit(str(request.url)).query)
        ids = [i for i in ",".join(query.get("ids", [""])).split(",") if i]
        if not ids or len(ids) > 100 or "public_metrics" not in ",".join(query.get("tweet.fields", [])).split(","):
            return JSONResponse({"errors": [{"parameters": {"ids": ids}, "message": "invalid request"}],
                                 "title": "Invalid Request", "type": "https://api.twitter.com/2/problems/invalid-request"},
                                400)
        data = [{"id": i, "text": "...", "edit_history_tweet_ids": [i], "public_metrics": self.posts[i]}
                for i in ids if i in self.posts]
        errors = [{"value": i, "detail": f"Could not find tweet with ids: [{i}].", "title": "Not Found Error",
                   "resource_type": "tweet", "parameter": "ids", "resource_id": i,
                   "type": "https://api.twitter.com/2/problems/resource-not-found"} for i in ids if i not in self.posts]
        body: dict = {}
        if data:
            body["data"] = data
        if errors:
            body["errors"] = errors
        return JSONResponse(body)
