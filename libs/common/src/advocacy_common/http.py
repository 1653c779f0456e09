"""The FastAPI application every service's `api` process starts from.

Adds what every service needs and no domain: problem+json errors, `/livez`,
`/readyz` (checks registered by the service: Kafka, the database), Prometheus
`/metrics`, request tracing, and the JWT verifier used by `auth.authenticate`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_fastapi_instrumentator import Instrumentator
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from .auth import JwksCache, JwtVerifier
from .cors import install_cors
from .api_support import key_reused_with_other_body
from .hardening import install_hardening
from .http_metrics import HttpMetricsMiddleware
from .errors import PROBLEM_JSON, Problem, install_problem_handlers, problem_response
from .mongo import create_client, ping
from .openapi_conventions import install_openapi_conventions
from .publishing import EventPublisher
from .repository import AlreadyExists, KeyReused, StaleWrite
from .settings import ServiceSettings
from .telemetry import TraceContextMiddleware, configure_tracing

ReadinessCheck = Callable[[], Awaitable[bool]]
log = logging.getLogger(__name__)

UNAUTHENTICATED_PATHS = ("/livez", "/readyz", "/metrics")

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {PROBLEM_JSON: {"schema": {"type": "object"}}}}
    for code, text in {400: "Malformed request (an unreadable body, a cursor this API did not return)",
                       401: "Missing or invalid bearer token", 403: "Role not allowed",
                       404: "Not found (or another tenant's)", 413: "Request body too large",
                       414: "Request URI too long", 422: "Invalid input, the field is named",
                       429: "Too many requests; retry after a while", 431: "Request header fields too large"}.items()
}


async def kafka_reachable(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """Readiness for an API that does not produce: some bootstrap broker accepts a TCP connection."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), timeout)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


@dataclass(frozen=True)
class ApiResources:
    database: AsyncDatabase
    publisher: EventPublisher | None  # only for APIs that publish themselves


@asynccontextmanager
async def api_resources(app: FastAPI, settings: ServiceSettings, *,
                        publisher: bool = False) -> AsyncIterator[ApiResources]:
    """What an `api` process holds while it runs: its database and, if it publishes, a started
    producer; `/readyz` checks both. Closed in reverse order on shutdown."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-api")
    database = client[settings.database]
    producer = None
    try:
        if publisher:
            producer = EventPublisher(settings.kafka_bootstrap_servers, settings.topics,
                                      client_id=f"{settings.service_name}-api")
            await producer.start()
        app.state.readiness["mongodb"] = lambda: ping(database)
        app.state.readiness["kafka"] = producer.is_ready if producer else \
            (lambda: kafka_reachable(settings.kafka_bootstrap_servers))
        yield ApiResources(database, producer)
    finally:
        if producer is not None:
            await producer.stop()
        await client.close()


def verifier_from_settings(settings: ServiceSettings) -> JwtVerifier:
    return JwtVerifier(issuer=settings.auth_issuer, audience=settings.auth_audience,
                       jwks=JwksCache(settings.auth_jwks_url), algorithms=settings.auth_algorithms,
                       leeway_seconds=settings.auth_leeway_seconds, cache_size=settings.auth_token_cache_size)


def install_repository_problems(app: FastAPI) -> None:
    """The answers every API gives when the repository base refuses a write (nothing was written)."""

    @app.exception_handler(KeyReused)
    async def _key_reused(request: Request, exc: KeyReused) -> JSONResponse:
        return problem_response(key_reused_with_other_body(), request)

    @app.exception_handler(StaleWrite)
    async def _stale(request: Request, exc: StaleWrite) -> JSONResponse:
        return problem_response(Problem(409, "Conflict", "The resource changed while this request was applied; "
                                        "read it again and retry."), request)

    @app.exception_handler(ConnectionFailure)
    @app.exception_handler(KafkaConnectionError)
    @app.exception_handler(KafkaTimeoutError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database or the broker is away (a restart, a failover): the client may retry, nothing was
        # acknowledged. A 503, not a 500: nothing is wrong with the request or the code.
        log.warning("%s on %s %s: answered 503", type(exc).__name__, request.method, request.url.path)
        return problem_response(Problem(503, "Service Unavailable", "A backing service does not answer right now; "
                                        "retry in a moment.", headers={"Retry-After": "5"}), request)

    @app.exception_handler(AlreadyExists)
    async def _exists(request: Request, exc: AlreadyExists) -> JSONResponse:
        return problem_response(Problem(409, "Conflict", "A resource with this identity exists already."), request)


def create_service_app(settings: ServiceSettings, *, title: str, description: str, version: str = "0.1.0",
                       lifespan: Any = None, verifier: JwtVerifier | None = None) -> FastAPI:
    # FastAPI's own telemetry layer off: the contrib instrumentor below makes the server spans, and the
    # native layer, on while a tracer provider is set, would only detect it and step aside, at ~15 % of
    # the CPU of a cheap request (bench/http_floor.py).
    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan,
                  responses=PROBLEM_RESPONSES, telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.verifier = verifier or verifier_from_settings(settings)
    app.state.readiness: dict[str, ReadinessCheck] = {}
    install_problem_handlers(app)
    install_repository_problems(app)
    install_openapi_conventions(app)
    configure_tracing(settings.service_name, export=settings.otlp_endpoint is not None)

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Readiness: every registered dependency (Kafka, the database) answers."""
        results = {}
        for name, check in app.state.readiness.items():
            try:
                results[name] = bool(await check())
            except Exception:
                results[name] = False
        ready = all(results.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": results},
                            status_code=200 if ready else 503)

    # Counted by route template (`handler`), method and exact status; the scrape adds the service.
    app.add_middleware(HttpMetricsMiddleware, excluded_handlers=frozenset(UNAUTHENTICATED_PATHS))
    Instrumentator().expose(app, endpoint="/metrics", include_in_schema=False)
    if settings.otlp_endpoint is not None:
        # One server span per request (route, method, status), none for probes and scrapes. Not the internal
        # `http send` / `http receive` spans per ASGI message: two more spans per answer that say nothing the
        # server span does not (its duration covers them), ~10 % of a cheap request's CPU.
        FastAPIInstrumentor.instrument_app(app, excluded_urls=",".join(UNAUTHENTICATED_PATHS),
                                           exclude_spans=["receive", "send"])
    install_hardening(app, settings)
    install_cors(app, settings)  # preflights are answered before anything but the trace context runs
    if settings.otlp_endpoint is None:
        # Nothing exported: the trace context alone, not a recording span per request (see telemetry.py).
        # Last, so outermost: refusals of the hardening log with the request's trace id too.
        app.add_middleware(TraceContextMiddleware, excluded_paths=frozenset(UNAUTHENTICATED_PATHS))
    return app
