"""A trace goes through Kafka: the worker's process span continues the producer's send span,
which continues the trace the envelope carries (even when the relay sends it later)."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from advocacy_common import topics
from advocacy_common.consuming import Delivery
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_common.settings import ServiceSettings
from advocacy_common.worker import ServiceWorker

pytestmark = pytest.mark.integration


async def test_the_consumer_joins_the_trace_the_envelope_carries(infrastructure, kafka_topics, run_id):
    settings = ServiceSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                               mongodb_uri=infrastructure.mongodb_uri, topic_prefix=kafka_topics.prefix,
                               topic_partitions=3, service_name="trace-test")
    worker = ServiceWorker(settings, "trace-test")  # configures tracing, as every service's worker does
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    ambassador_id = f"traced-{uuid.uuid4().hex[:6]}"
    handled: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_opted_out(delivery: Delivery) -> None:
        if delivery.event.ambassador_id == ambassador_id and not handled.done():
            handled.set_result(trace.get_current_span().get_span_context().trace_id)

    worker.consume([topics.AMBASSADOR], f"trace-test-{run_id}", {AmbassadorOptedOut: on_opted_out})
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    await worker.start()
    try:
        with trace.get_tracer("test").start_as_current_span("request") as request:
            envelope = envelope_for(AmbassadorOptedOut(ambassador_id=ambassador_id, opted_out_at=datetime.now(UTC)),
                                    tenant_id="acme", source="/t")
        request_trace = request.get_span_context().trace_id
        await publisher.publish(topics.AMBASSADOR, envelope)  # outside the request, as the relay does
        assert await asyncio.wait_for(handled, timeout=30) == request_trace
    finally:
        await worker.stop()
        await publisher.stop()
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == request_trace]
        exporter.shutdown()

    physical = kafka_topics.physical(topics.AMBASSADOR)
    send = [s for s in spans if s.kind == trace.SpanKind.PRODUCER and s.name == f"{physical} send"]
    process = [s for s in spans if s.kind == trace.SpanKind.CONSUMER and s.name == f"{physical} process"]
    assert len(send) == 1 and send[0].parent.span_id == request.get_span_context().span_id
    assert process and all(s.parent.span_id == send[0].context.span_id for s in process)
    assert not [s for s in spans if s.name.endswith(" receive")]  # FastStream's process span covers the record
    headers = await trace_headers_of(infrastructure.kafka_bootstrap_servers, physical, envelope.id)
    assert [name for name, _ in headers] == ["traceparent"]
    assert headers[0][1].split("-")[1:3] == [f"{request_trace:032x}", f"{send[0].context.span_id:016x}"]


async def trace_headers_of(bootstrap_servers: str, physical_topic: str, event_id: str) -> list[tuple[str, str]]:
    """The trace headers of the record carrying `event_id`: one `traceparent`, the producer's span."""
    consumer = AIOKafkaConsumer(physical_topic, bootstrap_servers=bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    # The session's topics also carry other tests' poison (headers that are not UTF-8).
                    headers = [(name, value.decode(errors="replace")) for name, value in record.headers]
                    if ("ce_id", event_id) in headers:
                        return [(name, value) for name, value in headers if name in ("traceparent", "tracestate")]
    finally:
        await consumer.stop()
    return []
