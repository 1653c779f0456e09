"""What every API refuses before the framework sees a request, and the headers every response carries.

A pure ASGI middleware (BaseHTTPMiddleware would buffer responses and break
streaming): it checks the Host, the size of each header and of the URL, reads
the body while counting its bytes (a lying or absent Content-Length and
chunked bodies are caught as they arrive), and measures the nesting of a JSON
body with a cheap scanner before anything parses it. A refused request never
reaches the application, so it changes nothing. A write over its rate limit is
refused before its body is read (see ratelimit.py). Responses get the security
headers, and `Cache-Control: no-store` when the request carried credentials.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from .errors import PROBLEM_JSON, Problem, bad_request
from .ratelimit import RateLimiter
from .settings import ServiceSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Probes and scrapers call these by the pod's IP: no Host check, nothing personal in them.
HOST_EXEMPT_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
# Bodies read by something other than a JSON parser; every other body is scanned, whatever its
# declared type, because some endpoints (SCIM) parse JSON whatever the client declared.
NOT_JSON_MEDIA_TYPES = frozenset({"text/csv", "multipart/form-data", "application/x-www-form-urlencoded"})
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI and ReDoc (FastAPI's pages) load their script and style from jsDelivr, run inline code,
# and ReDoc takes its fonts from Google Fonts and runs a blob worker.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; worker-src blob:; "
            "frame-ancestors 'none'")
# A JSON string (escapes included) or one bracket: strings are skipped by the regex engine, in C.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]')


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int
    max_json_depth: int
    max_header_bytes: int
    max_url_bytes: int
    allowed_hosts: tuple[str, ...]
    hsts_seconds: int

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> HttpLimits:
        return cls(settings.max_body_bytes, settings.max_json_depth, settings.max_header_bytes,
                   settings.max_url_bytes, tuple(h.lower() for h in settings.allowed_hosts), settings.hsts_seconds)


class Refused(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.detail)
        self.problem = problem


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when arrays/objects nest deeper than `limit` (brackets inside strings do not count).

    Not a validator: malformed JSON is left to the parser, which answers it properly.
    """
    depth = 0
    for token in _JSON_TOKENS.finditer(body):
        first = token.group()[0]
        if first in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif first in b"]}":
            depth -= 1
    return False


# U+0000, raw or as a JSON escape preceded by an odd number of backslashes (an even number escapes the
# backslash itself: the text "\\u0000", which is harmless).
_NUL = re.compile(rb"\x00|(?<!\\)(?:\\\\)*\\u0000")


def carries_nul(body: bytes) -> bool:
    """True when the body holds the NUL character. No text of ours needs it, and FerretDB on PostgreSQL
    cannot store it (jsonb refuses U+0000: the insert fails with an internal error), so it is refused
    before any endpoint sees it, on MongoDB too, to keep the services' answers the same on both."""
    return _NUL.search(body) is not None


SCIM_PATH_PREFIX = "/scim/"
SCIM_JSON = "application/scim+json"
SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    if "*" in allowed:
        return True
    host = host_header.lower()
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 \
        else host
    return any(host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])) for pattern in allowed)


def _content_length(values: list[bytes]) -> int | None:
    if not values:
        return None
    if len(set(values)) > 1 or not all(v.isdigit() and len(v) <= 18 for v in values):
        raise Refused(bad_request("Content-Length", "must be one non-negative integer"))
    return int(values[0])


def too_large(limit: int) -> Problem:
    return Problem(413, "Content Too Large", f"The request body may have at most {limit} bytes.")


@dataclass
class _Head:
    """What the middleware reads from the request's headers, found in one pass over them."""
    host: str = ""
    authorization: str = ""
    content_type: str = ""
    content_lengths: list[bytes] | None = None


class HardeningMiddleware:
    def __init__(self, app: Callable[..., Awaitable[None]], limits: HttpLimits, limiter: RateLimiter | None = None):
        self.app = app
        self.limits = limits
        self.limiter = limiter
        # The response headers, encoded once: (name, value) as ASGI carries them.
        self._api_headers = _encoded(self._security_headers(docs=False))
        self._docs_headers = _encoded(self._security_headers(docs=True))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            head = self._check_head(scope)
            if self.limiter is not None:  # a write over quota costs no body read and no signature check
                refusal = await self.limiter.refuse_early(scope["method"], head.authorization)
                if refusal is not None:
                    raise Refused(refusal)
            body = await self._read_body(receive, head)
        except Refused as refused:
            await self._answer(refused.problem, scope, receive, send)
            return
        except ClientGone:
            return  # nobody to answer, and nothing was done
        try:
            await self.app(scope, _replaying(body, receive), self._securing(send, scope, bool(head.authorization)))
        finally:
            if self.limiter is not None:
                self.limiter.release(scope)  # the tenant's in-progress write slot, if the request took one

    def _check_head(self, scope: Scope) -> _Head:
        limits = self.limits
        head = _Head()
        too_long: bytes | None = None
        for name, value in scope["headers"]:  # one pass: sizes measured, what is needed below kept
            if len(value) > limits.max_header_bytes:
                too_long = too_long or name
            elif name == b"host":
                head.host = head.host or value.decode("latin-1")
            elif name == b"authorization":
                # Present even when empty: an empty header is still a credentialed request (no-store).
                head.authorization = head.authorization or value.decode("latin-1") or " "
            elif name == b"content-type":
                head.content_type = head.content_type or value.decode("latin-1")
            elif name == b"content-length":
                head.content_lengths = [*(head.content_lengths or []), value]
        if scope["path"] not in HOST_EXEMPT_PATHS and not host_allowed(head.host, limits.allowed_hosts):
            raise Refused(bad_request("Host", "is not a host this service answers for"))
        if len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b"")) \
                > limits.max_url_bytes:
            raise Refused(Problem(414, "URI Too Long", f"Path and query may have at most {limits.max_url_bytes} "
                                                       "bytes."))
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            raise Refused(bad_request("url", "may not contain the NUL character (U+0000)"))  # see `carries_nul`
        if too_long is not None:
            raise Refused(Problem(431, "Request Header Fields Too Large", f"The {too_long.decode('latin-1')} header "
                                  f"is longer than {limits.max_header_bytes} bytes."))
        return head

    async def _read_body(self, receive: Receive, head: _Head) -> bytes:
        limit = self.limits.max_body_bytes
        declared = _content_length(head.content_lengths or [])
        if declared is not None and declared > limit:
            raise Refused(too_large(limit))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(too_large(limit))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not body:
            return body  # nothing to scan (every GET)
        media_type = head.content_type.split(";", 1)[0].strip().lower()
        if media_type not in NOT_JSON_MEDIA_TYPES and json_depth_exceeds(body, self.limits.max_json_depth):
            raise Refused(bad_request("body", f"JSON may nest at most {self.limits.max_json_depth} levels deep"))
        if carries_nul(body):
            raise Refused(bad_request("body", "may not contain the NUL character (U+0000)"))
        return body

    def _securing(self, send: Send, scope: Scope, credentials: bool) -> Send:
        security = self._docs_headers if scope["path"] in DOCS_PATHS else self._api_headers

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Our security headers unless the app set its own, no-store on every authenticated answer
                # (each carries a tenant's or a person's data), no Server banner.
                given = [(name, value) for name, value in message.get("headers", ()) if name.lower() != b"server"]
                present = {name.lower() for name, _ in given}
                given += [header for header in security if header[0] not in present]
                if credentials and b"cache-control" not in present:
                    given.append((b"cache-control", b"no-store"))
                message["headers"] = given
            await send(message)

        return secured

    def _security_headers(self, docs: bool) -> dict[str, str]:
        headers = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                   "content-security-policy": DOCS_CSP if docs else API_CSP, "x-frame-options": "DENY"}
        if self.limits.hsts_seconds:
            headers["strict-transport-security"] = f"max-age={self.limits.hsts_seconds}; includeSubDomains"
        return headers

    async def _answer(self, problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {**(problem.headers or {}), **({"connection": "close"} if problem.status in (400, 413) else {})}
        if scope["path"].startswith(SCIM_PATH_PREFIX):
            # SCIM clients (identity providers) expect SCIM's own error format (RFC 7644, 3.12).
            body = {"schemas": [SCIM_ERROR_SCHEMA], "status": str(problem.status), "detail": problem.detail or problem.title}
            response = JSONResponse(body, status_code=problem.status, media_type=SCIM_JSON, headers=headers)
        else:
            response = JSONResponse(problem.body(scope["path"]), status_code=problem.status, media_type=PROBLEM_JSON,
                                    headers=headers)
        credentials = "authorization" in Headers(scope=scope)
        await response(scope, receive, self._securing(send, scope, credentials))


def _encoded(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body already read, as one message; then the client's own messages (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def install_hardening(app: FastAPI, settings: ServiceSettings) -> None:
    """The middleware and the per-replica rate limiter, for an app made by `create_service_app`."""
    app.state.rate_limiter = RateLimiter.from_settings(settings)
    app.add_middleware(HardeningMiddleware, limits=HttpLimits.from_settings(settings), limiter=app.state.rate_limiter)
