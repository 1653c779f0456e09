"""Prometheus request metrics of an API, by a pure ASGI middleware.

The same series prometheus-fastapi-instrumentator's `requests()` and `latency()` made, under the same
names and labels: `http_requests_total{handler, method, status}` and
`http_request_duration_seconds{handler, method}`, `handler` the route template (its own resolution,
`routing.get_route_name`: included routers, mounts, partial matches), `none` for a path no route
serves (no unbounded label values). Health and metrics paths are not counted. Its middleware built a
Request, a Response with the answer's headers, an Info and an empty `asyncio.gather` per request:
a third of the middleware CPU of a cheap request (bench/http_floor.py); this one counts and times.
Resolving the template tries every route in turn (~20 µs for distribution's 31): the answers for
recent paths are kept (`RouteTemplates`), the route table does not change while an app serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from timeit import default_timer
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection

# Created once per process and shared by every app in it (one in production, many in tests).
REQUESTS = Counter("http_requests_total", "Total number of requests by method, status and handler.",
                   labelnames=("handler", "method", "status"))
DURATION = Histogram("http_request_duration_seconds", "Duration of HTTP requests in seconds",
                     labelnames=("handler", "method"))

Message = MutableMapping[str, Any]
MAX_SERIES_KEPT = 4096  # children kept per middleware; a client's odd methods cannot grow it without bound


class RouteTemplates:
    """The route template of (method, root_path, path), remembered for at most `max_entries` paths of at most
    `max_path_bytes` (paths are the client's choice: memory stays bounded, a flood of distinct paths only
    costs the resolution every request paid before). Forgotten when the app's route table changes size."""

    def __init__(self, max_entries: int = 2048, max_path_bytes: int = 512):
        self.max_entries, self.max_path_bytes = max_entries, max_path_bytes
        self._known: dict[tuple[str, str, str], str | None] = {}
        self._routes = -1

    def of(self, scope: MutableMapping[str, Any]) -> str | None:
        routes = len(getattr(scope.get("app"), "routes", ()) or ())
        if routes != self._routes:
            self._known.clear()
            self._routes = routes
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        try:
            return self._known[key]
        except KeyError:
            pass
        template = get_route_name(HTTPConnection(scope), should_include_root_path=False)
        if len(key[2]) <= self.max_path_bytes:
            if len(self._known) >= self.max_entries:
                self._known.clear()
            self._known[key] = template
        return template


class HttpMetricsMiddleware:
    def __init__(self, app: Callable[..., Awaitable[None]], excluded_handlers: frozenset[str] = frozenset()):
        self.app = app
        self.excluded_handlers = excluded_handlers
        self.templates = RouteTemplates()
        # The series' children by (handler, method, status): `labels()` takes the metric's lock and checks its
        # labels on every call. Bounded: handlers are route templates or "none", methods and statuses few.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _children(self, handler: str, method: str, status: int) -> tuple[Any, Any]:
        key = (handler, method, status)
        children = self._series.get(key)
        if children is None:
            if len(self._series) >= MAX_SERIES_KEPT:
                self._series.clear()
            children = self._series[key] = (REQUESTS.labels(handler, method, str(int(status))),
                                            DURATION.labels(handler, method))
        return children

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = default_timer()
        # Resolved before the app runs: routing rewrites the scope (a mount's root_path).
        handler = self.templates.of(scope)
        if handler in self.excluded_handlers:
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before answering

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            requests, duration = self._children(handler or "none", scope["method"], status)
            requests.inc()
            duration.observe(max(default_timer() - start, 0.0))
