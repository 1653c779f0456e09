"""Turning events into envelopes, and putting envelopes on Kafka.

Only the outbox relay, the DLQ writer and endpoints that must answer after
Kafka acknowledged (engagement webhooks) publish directly; handlers never do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata
from opentelemetry import propagate

from .envelope import TRACE_HEADERS, Envelope, KafkaRecord, to_kafka
from .events import Event
from .telemetry import in_trace_of, kafka_instrumented
from .topics import TopicNames

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_WAIT_SECONDS = 180.0


async def while_kafka_unreachable(step: Callable[[], Awaitable[T]], what: str,
                                  wait_seconds: float = STARTUP_WAIT_SECONDS) -> T:
    """Run `step` (a first contact with Kafka), again while the broker does not answer, for up to
    `wait_seconds`: a process (re)started during a broker restart waits for it instead of exiting."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.5
    while True:
        try:
            return await step()
        except (KafkaConnectionError, KafkaTimeoutError) as error:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s: Kafka does not answer (%s); trying again in %.1f s", what, error, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


def envelope_for(event: Event, *, tenant_id: str, source: str, causation: Envelope | None = None,
                 correlation_id: str | None = None, event_id: str | None = None) -> Envelope:
    """Wrap an event; the subject (Kafka key) is its aggregate id, or the tenant for charter events.

    Trace context is taken from the current span so the consumer's span joins the
    producer's trace. Causation and correlation follow the event that caused this one.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    subject = tenant_id if event.keyed_by_tenant else event.aggregate_id()
    extra: dict[str, Any] = {"id": event_id} if event_id else {}
    return Envelope(
        source=source,
        type=event.type_name,
        subject=subject,
        tenantid=tenant_id,
        causationid=causation.id if causation else None,
        correlationid=correlation_id or (causation.correlationid or causation.id if causation else None),
        traceparent=carrier.get("traceparent"),
        tracestate=carrier.get("tracestate"),
        data=event.model_dump(mode="json"),
        **extra,
    )


class EventPublisher:
    """An idempotent producer (`acks=all`): `publish` returns once Kafka acknowledged."""

    def __init__(self, bootstrap_servers: str, names: TopicNames, client_id: str = "advocacy"):
        self.names = names
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=15000,
        )
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await while_kafka_unreachable(self._producer.start, "starting the producer")
            self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.stop()
            self._started = False

    async def publish(self, logical_topic: str, envelope: Envelope) -> None:
        await (await self._send_envelope(logical_topic, envelope))

    async def publish_many(self, items: list[tuple[str, Envelope]]) -> None:
        """Send several envelopes, then wait for all acknowledgements (order kept per key)."""
        futures = [await self._send_envelope(topic, envelope) for topic, envelope in items]
        for future in futures:
            await future

    async def send_record(self, physical_topic: str, record: KafkaRecord, partition: int | None = None) -> None:
        """Send a record as it is (the DLQ's copy), in the current trace."""
        await (await self._send(physical_topic, record, partition))

    async def _send_envelope(self, logical_topic: str, envelope: Envelope) -> asyncio.Future[RecordMetadata]:
        # The send span joins the trace the envelope carries, even when the relay sends it long after.
        with in_trace_of(envelope):
            return await self._send(self.names.physical(logical_topic), to_kafka(envelope))

    async def _send(self, physical_topic: str, record: KafkaRecord,
                    partition: int | None = None) -> asyncio.Future[RecordMetadata]:
        headers = list(record.headers)
        if kafka_instrumented():
            # The instrumentation appends the `traceparent` of its send span (a child of the
            # current trace); drop the copy we carry so that the record has a single one.
            headers = [(name, value) for name, value in headers if name.lower() not in TRACE_HEADERS]
        return await self._producer.send(physical_topic, key=record.key, value=record.value, headers=headers,
                                         partition=partition)

    async def is_ready(self) -> bool:
        try:
            await self._producer.client.fetch_all_metadata()
            return True
        except Exception:
            return False
