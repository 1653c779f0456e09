"""The middlewares every app of `create_service_app` gets around its routes: trace context and request metrics."""

from datetime import UTC, datetime

import pytest
from fastapi import APIRouter, Depends
from httpx import ASGITransport, AsyncClient
from opentelemetry import trace
from prometheus_client import REGISTRY

from advocacy_common.auth import Principal, authenticate
from advocacy_common.events import AmbassadorErased
from advocacy_common.http import create_service_app
from advocacy_common.http_metrics import RouteTemplates
from advocacy_common.publishing import envelope_for
from advocacy_common.settings import ServiceSettings
from advocacy_common.telemetry import TraceContextMiddleware, configure_tracing

pytestmark = pytest.mark.unit
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


def make_app(auth_settings):
    app = create_service_app(ServiceSettings(service_name="stack-test", **auth_settings), title="t", description="t")
    seen = app.state.seen = []

    @app.get("/traced")
    async def traced():
        span = trace.get_current_span().get_span_context()
        envelope = envelope_for(AmbassadorErased(ambassador_id="a", erased_at=datetime.now(UTC)), tenant_id="acme",
                                source="/t")
        seen.append((format(span.trace_id, "032x"), format(span.span_id, "016x"), span.trace_flags.sampled,
                     envelope.traceparent))
        return {}

    things = APIRouter(prefix="/v1")

    @things.get("/things/{thing_id}")
    async def thing(thing_id: str, principal: Principal = Depends(authenticate)):
        return {"id": thing_id}

    app.include_router(things, prefix="/api")
    return app


def client(app):
    return AsyncClient(transport=ASGITransport(app), base_url="http://t")


async def test_a_request_continues_the_callers_trace_and_its_events_carry_it(auth_settings):
    app = make_app(auth_settings)
    assert any(m.cls is TraceContextMiddleware for m in app.user_middleware)  # nothing exported in tests
    async with client(app) as http:
        await http.get("/traced", headers={"traceparent": CALLER})
        await http.get("/traced")
        await http.get("/traced")
    (trace_id, span_id, sampled, traceparent), *fresh = app.state.seen
    assert trace_id == CALLER_TRACE and span_id != "00f067aa0ba902b7" and sampled
    assert traceparent == f"00-{CALLER_TRACE}-{span_id}-01"  # the consumer's span joins the caller's trace
    assert all(t != CALLER_TRACE and t != "0" * 32 and p and t in p for t, _, _, p in fresh)
    assert fresh[0][0] != fresh[1][0]  # each request without a caller is its own trace
    assert not trace.get_current_span().get_span_context().is_valid  # nothing leaks out of the request


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


async def test_requests_are_counted_by_route_template_and_health_is_not(auth_settings, bearer):
    app = make_app(auth_settings)
    before = {"ok": sample("http_requests_total", handler="/api/v1/things/{thing_id}", method="GET", status="200"),
              "refused": sample("http_requests_total", handler="/api/v1/things/{thing_id}", method="GET",
                                status="401"),
              "wrong_method": sample("http_requests_total", handler="/api/v1/things/{thing_id}", method="POST",
                                     status="405"),
              "none": sample("http_requests_total", handler="none", method="GET", status="404"),
              "timed": sample("http_request_duration_seconds_count", handler="/api/v1/things/{thing_id}",
                              method="GET"),
              "livez": sample("http_requests_total", handler="/livez", method="GET", status="200")}
    async with client(app) as http:
        for n in range(3):
            assert (await http.get(f"/api/v1/things/{n}", headers=bearer("acme", "a", "editor"))).status_code == 200
        assert (await http.get("/api/v1/things/9")).status_code == 401
        assert (await http.post("/api/v1/things/9")).status_code == 405
        assert (await http.get("/api/nowhere/123")).status_code == 404
        assert (await http.get("/livez")).status_code == 200
        scrape = (await http.get("/metrics")).text
    assert sample("http_requests_total", handler="/api/v1/things/{thing_id}", method="GET",
                  status="200") - before["ok"] == 3
    assert sample("http_requests_total", handler="/api/v1/things/{thing_id}", method="GET",
                  status="401") - before["refused"] == 1
    assert sample("http_requests_total", handler="/api/v1/things/{thing_id}", method="POST",
                  status="405") - before["wrong_method"] == 1
    assert sample("http_requests_total", handler="none", method="GET", status="404") - before["none"] == 1
    assert sample("http_request_duration_seconds_count", handler="/api/v1/things/{thing_id}",
                  method="GET") - before["timed"] == 4
    assert sample("http_requests_total", handler="/livez", method="GET", status="200") == before["livez"] == 0
    assert 'handler="/api/nowhere/123"' not in scrape and 'http_requests_total{handler="none"' in scrape


def test_remembered_templates_stay_bounded_and_follow_the_route_table(auth_settings):
    app = make_app(auth_settings)
    templates = RouteTemplates(max_entries=4, max_path_bytes=32)
    scope = {"type": "http", "method": "GET", "root_path": "", "headers": [], "query_string": b"", "app": app}
    assert templates.of({**scope, "path": "/api/v1/things/1"}) == "/api/v1/things/{thing_id}"
    for n in range(20):
        templates.of({**scope, "path": f"/api/v1/things/{n}"})
    assert len(templates._known) <= 4
    templates.of({**scope, "path": "/api/v1/things/" + "x" * 64})  # too long to be kept
    assert all(len(path) <= 32 for _, _, path in templates._known)
    assert templates.of({**scope, "path": "/later"}) is None

    @app.get("/later")
    async def later():
        return {}

    assert templates.of({**scope, "path": "/later"}) == "/later"  # a new route is seen at once


async def test_with_an_exporter_each_request_is_one_server_span_without_per_message_spans(auth_settings):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    configure_tracing("stack-test")  # the process's provider, without an exporter that would send anywhere
    settings = ServiceSettings(service_name="stack-test", **auth_settings)
    app = create_service_app(settings.model_copy(update={"otlp_endpoint": "http://127.0.0.1:9/"}), title="t",
                             description="t")

    @app.get("/spanned/{thing}")
    async def spanned(thing: str):
        return {}

    assert not any(m.cls is TraceContextMiddleware for m in app.user_middleware)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)  # set once per process by configure_tracing
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with client(app) as http:
        await http.get("/spanned/1", headers={"traceparent": CALLER})
        await http.get("/livez")
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == int(CALLER_TRACE, 16)]
    assert [(s.name, s.kind) for s in spans] == [("GET /spanned/{thing}", trace.SpanKind.SERVER)]
    assert not [s for s in exporter.get_finished_spans() if "livez" in s.name]
    exporter.clear()
