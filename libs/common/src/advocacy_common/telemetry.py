"""OpenTelemetry set-up, once per process.

Traces cover FastAPI requests, PyMongo commands and Kafka hops (the envelope
carries `traceparent`; consumers continue the producer's trace). Spans are
exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set (settings
decide; the exporter then reads its standard OTEL_* variables itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
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
    _configured = True


@contextmanager
def consuming_span(envelope: Envelope, topic: str) -> Iterator[trace.Span]:
    """A consumer span that continues the trace carried by the envelope."""
    carrier = {k: v for k, v in (("traceparent", envelope.traceparent), ("tracestate", envelope.tracestate)) if v}
    context = propagate.extract(carrier)
    tracer = trace.get_tracer("advocacy.kafka")
    with tracer.start_as_current_span(f"{topic} process", context=context, kind=trace.SpanKind.CONSUMER,
                                      attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                                                  "messaging.message.id": envelope.id,
                                                  "cloudevents.event_type": envelope.type}) as span:
        yield span
