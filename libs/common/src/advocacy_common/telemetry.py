"""OpenTelemetry set-up, once per process (called by `create_service_app` and `ServiceWorker`).

Traces cover FastAPI requests, PyMongo commands (when spans are exported) and Kafka hops: the envelope's
`traceparent` (the CloudEvents tracing extension, written as the W3C header of
the same name) carries the trace. The aiokafka instrumentation opens the
producer's send span and writes that header (its consumer side is switched
off, see below); FastStream's telemetry middleware
(see `worker.build_broker`) opens the consumer's process span from it. Spans
are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set
(settings decide; the exporter then reads its standard OTEL_* variables itself).

HTTP requests get their server span from the FastAPI instrumentation when spans are
exported. When they are not, `TraceContextMiddleware` gives each request only what outlives
it: a span context continuing the caller's `traceparent` (or a new trace), current while the
request runs, so log lines carry its trace id and the events it publishes carry a
`traceparent` a downstream exporter joins. A recording span nobody exports cost half of a
cheap request's middleware CPU (bench/http_floor.py).

PyMongo commands get client spans only when spans are exported: the instrumentation is a command
listener, so without it PyMongo builds no started/succeeded event per command either, and a span of
a database command carries nothing downstream (no header travels with it). Per feed request (one
read) the listener and its unexported span were ~4 % of the api's samples (bench/feed_bench.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from .envelope import Envelope

_configured = False


def configure_tracing(service_name: str, export: bool = False) -> None:
    """Once per process: the first call decides (a process's api app or worker, from its settings)."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if export:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        PymongoInstrumentor().instrument()  # see the module's docstring: spans nobody would see otherwise
    trace.set_tracer_provider(provider)
    AIOKafkaInstrumentor().instrument()
    # Keep its send spans, drop its receive spans: FastStream's process span already covers
    # each record, and a receive span per record of a 1000-record batch costs ~80 ms.
    unwrap(AIOKafkaConsumer, "getone")
    unwrap(AIOKafkaConsumer, "getmany")
    _configured = True


def pymongo_instrumented() -> bool:
    """Whether PyMongo commands make client spans (only in a process that exports spans)."""
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    return PymongoInstrumentor().is_instrumented_by_opentelemetry


def kafka_instrumented() -> bool:
    """Whether the aiokafka instrumentation writes the trace headers of what we send."""
    return AIOKafkaInstrumentor().is_instrumented_by_opentelemetry


def envelope_context(envelope: Envelope) -> context.Context:
    """The trace context the envelope carries (empty if it carries none)."""
    carrier = {k: v for k, v in (("traceparent", envelope.traceparent), ("tracestate", envelope.tracestate)) if v}
    return propagate.extract(carrier)


@contextmanager
def in_trace_of(envelope: Envelope) -> Iterator[None]:
    """Make the envelope's trace current, so that spans opened inside (sending it) join it."""
    token = context.attach(envelope_context(envelope))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def consuming_span(envelope: Envelope, topic: str) -> Iterator[trace.Span]:
    """The span of handling one event, in the trace the envelope carries.

    Under FastStream's process span (same trace) it is a child of it; on its own
    (no consumer span current) it is the consumer span continuing the producer's trace.
    """
    parent = envelope_context(envelope)
    current = trace.get_current_span().get_span_context()
    nested = current.is_valid and current.trace_id == trace.get_current_span(parent).get_span_context().trace_id
    tracer = trace.get_tracer("advocacy.kafka")
    with tracer.start_as_current_span(f"{topic} handle {envelope.type}", context=None if nested else parent,
                                      kind=trace.SpanKind.INTERNAL if nested else trace.SpanKind.CONSUMER,
                                      attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                                                  "messaging.message.id": envelope.id,
                                                  "cloudevents.event_type": envelope.type}) as span:
        yield span


_IDS = RandomIdGenerator()
_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


def request_span_context(headers: list[tuple[bytes, bytes]]) -> context.Context:
    """A span of this request, non-recording, in the trace of the caller's W3C `traceparent` (sampled as the
    caller says, like the SDK's parent-based sampler) or in a new, sampled trace (like its ALWAYS_ON root)."""
    carrier = {_TRACE_HEADERS[name]: value.decode("latin-1") for name, value in headers if name in _TRACE_HEADERS}
    parent = propagate.extract(carrier) if carrier else context.Context()
    caller = trace.get_current_span(parent).get_span_context()
    own = SpanContext(trace_id=caller.trace_id if caller.is_valid else _IDS.generate_trace_id(),
                      span_id=_IDS.generate_span_id(), is_remote=False,
                      trace_flags=caller.trace_flags if caller.is_valid else TraceFlags(TraceFlags.SAMPLED),
                      trace_state=caller.trace_state if caller.is_valid else None)
    return trace.set_span_in_context(NonRecordingSpan(own), parent)


class TraceContextMiddleware:
    """Pure ASGI: makes `request_span_context` current for each HTTP request (see the module's docstring)."""

    def __init__(self, app: Callable[..., Awaitable[None]], excluded_paths: frozenset[str] = frozenset()):
        self.app = app
        self.excluded_paths = excluded_paths

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        token = context.attach(request_span_context(scope["headers"]))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
