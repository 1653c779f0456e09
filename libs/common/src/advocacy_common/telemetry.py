"""OpenTelemetry set-up, once per process (called by `create_service_app` and `ServiceWorker`).

Traces cover FastAPI requests, PyMongo commands and Kafka hops: the envelope's
`traceparent` (the CloudEvents tracing extension, written as the W3C header of
the same name) carries the trace. The aiokafka instrumentation opens the
producer's send span and writes that header (its consumer side is switched
off, see below); FastStream's telemetry middleware
(see `worker.build_broker`) opens the consumer's process span from it. Spans
are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set
(settings decide; the exporter then reads its standard OTEL_* variables itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from .envelope import Envelope

_configured = False


def configure_tracing(service_name: str, export: bool = False) -> None:
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if export:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    PymongoInstrumentor().instrument()
    AIOKafkaInstrumentor().instrument()
    # Keep its send spans, drop its receive spans: FastStream's process span already covers
    # each record, and a receive span per record of a 1000-record batch costs ~80 ms.
    unwrap(AIOKafkaConsumer, "getone")
    unwrap(AIOKafkaConsumer, "getmany")
    _configured = True


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
