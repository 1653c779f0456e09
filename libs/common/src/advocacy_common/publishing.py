"""Turning events into envelopes, and putting envelopes on Kafka.

Only the outbox relay, the DLQ writer and endpoints that must answer after
Kafka acknowledged (engagement webhooks) publish directly; handlers never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (InvalidProducerEpoch, KafkaError, KafkaTimeoutError, OutOfOrderSequenceNumber,
                             ProducerFenced, UnknownProducerId)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata
from opentelemetry import propagate

from .envelope import TRACE_HEADERS, Envelope, KafkaRecord, to_kafka
from .events import Event
from .startup_wait import while_kafka_unreachable
from .telemetry import in_trace_of, kafka_instrumented
from .topics import TopicNames

log = logging.getLogger(__name__)
# The partitioner every producer of ours is given, so that `publish_batched` picks the partition `send` would.
KEY_PARTITIONER = DefaultPartitioner()
# What ends an idempotent producer's sender task (aiokafka re-raises these from it, or wraps in a KafkaError).
FATAL_TO_PRODUCER = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced, InvalidProducerEpoch, KafkaError)


def _ended_with(task: asyncio.Task) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return repr(error) if error else "ended"


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
    """An idempotent producer (`acks=all`): `publish` returns once Kafka acknowledged.

    An idempotent aiokafka producer does not survive some broker restarts: the broker answers
    OutOfOrderSequenceNumber, the producer's sender task ends, and every later send waits forever
    in its buffer (aio-libs/aiokafka#1017; found by the chaos run). So a send first checks that the
    sender still runs and replaces a dead producer, and waiting for an acknowledgement is bounded
    (`ack_timeout_seconds`): the caller then gets an error it can retry (a 503, the relay's next pass)
    instead of a request that never ends.
    """

    def __init__(self, bootstrap_servers: str, names: TopicNames, client_id: str = "advocacy",
                 ack_timeout_seconds: float = 45.0):
        self.names = names
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self.ack_timeout_seconds = ack_timeout_seconds
        self._producer = self._new_producer()
        self._renewing = asyncio.Lock()
        self._started = False

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            partitioner=KEY_PARTITIONER,
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=15000,
        )

    async def start(self) -> None:
        if not self._started:
            await while_kafka_unreachable(self._producer.start, "starting the producer")
            self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.stop()
            self._started = False

    async def publish(self, logical_topic: str, envelope: Envelope) -> None:
        await self._acknowledged([await self._send_envelope(logical_topic, envelope)])

    async def publish_many(self, items: list[tuple[str, Envelope]]) -> None:
        """Send several envelopes, then wait for all acknowledgements (order kept per key)."""
        await self._acknowledged([await self._send_envelope(topic, envelope) for topic, envelope in items])

    async def publish_batched(self, items: list[tuple[str, Envelope]]) -> None:
        """`publish_many` for many events at once (the relay's queues: distribution's clicks), appended to
        one record batch per partition and sent a batch at a time; returns once Kafka acknowledged them all.

        Per record this skips what `send` does for each: the metadata wait, one future,
        and the instrumentation's send span (its creation, attributes and header injection were most of a
        busy relay's CPU per event). The records keep the `traceparent` their envelopes carry, so a
        consumer's span still joins the trace of the request that caused the event, without a send span
        between them. Partitions are chosen by the producer's own partitioner on the same key as `send`'s,
        and a partition's records are appended and sent in the order given: the order per key is kept.
        """
        if not items:
            return
        await self._replace_if_dead()
        producer = self._producer
        open_batches: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[RecordMetadata]] = []
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        for logical_topic, envelope in items:
            topic = self.names.physical(logical_topic)
            if topic not in partitions:
                every = await producer.partitions_for(topic)  # waits for the topic's metadata, as `send` does
                # As the producer lists them for `send`, with the partitioner it was given: same key, same partition.
                partitions[topic] = (list(every), list(producer.client.cluster.available_partitions_for_topic(topic)))
            record = to_kafka(envelope)
            partition = KEY_PARTITIONER(record.key, *partitions[topic])
            batch = open_batches.get((topic, partition))
            if batch is None:
                batch = open_batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))  # full: send it
                batch = open_batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers) is None:
                    raise ValueError(f"event {envelope.id} is larger than a record batch")
        for (topic, partition), batch in open_batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await self._acknowledged(futures)

    async def _acknowledged(self, futures: list[asyncio.Future[RecordMetadata]]) -> None:
        try:
            async with asyncio.timeout(self.ack_timeout_seconds):
                for future in futures:
                    await future
        except TimeoutError:
            raise KafkaTimeoutError(f"no acknowledgement within {self.ack_timeout_seconds} s") from None
        except FATAL_TO_PRODUCER:
            await self._replace_if_dead()
            raise

    async def _replace_if_dead(self) -> None:
        async with self._renewing:
            task = getattr(getattr(self._producer, "_sender", None), "sender_task", None)
            if not self._started or task is None or not task.done():
                return
            broken, self._producer = self._producer, self._new_producer()
            log.warning("the Kafka producer stopped (%s); starting a new one", _ended_with(task))
            await while_kafka_unreachable(self._producer.start, "restarting the producer")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broken.stop(), 5)

    async def send_record(self, physical_topic: str, record: KafkaRecord, partition: int | None = None) -> None:
        """Send a record as it is (the DLQ's copy), in the current trace."""
        await self._acknowledged([await self._send(physical_topic, record, partition)])

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
        await self._replace_if_dead()  # a dead producer would buffer the record forever
        return await self._producer.send(physical_topic, key=record.key, value=record.value, headers=headers,
                                         partition=partition)

    async def is_ready(self) -> bool:
        try:
            await self._producer.client.fetch_all_metadata()
            return True
        except Exception:
            return False
