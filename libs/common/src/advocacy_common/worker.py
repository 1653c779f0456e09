"""FastStream glue for the `worker` process: subscribers that commit after the effect.

The subscriber acknowledges (commits) only when the dispatcher returned, i.e.
when the effect is durable or the record is in the DLQ. On a transient error (or
a DLQ that cannot be written) it nacks: FastStream seeks back and the record is
delivered again after a pause. FastStream never decodes a record itself: the
dispatcher does, so that a record nobody can read is dead-lettered, not retried.
Partitions are given up in a rebalance only between batches, with the batch in
hand committed (`HandOver`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.message import AckStatus
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

from pymongo.asynchronous.collection import AsyncCollection

from .collector import freeze_startup_objects
from .consuming import BatchHandler, Dispatcher, Handler, PreparedBatch, ProcessedEvents, RawRecord
from .events import Event
from .outbox import OutboxRelay
from .publishing import EventPublisher
from .settings import ServiceSettings
from .telemetry import configure_tracing
from .topics import ensure_topics

log = logging.getLogger(__name__)
TRANSIENT_PAUSE_SECONDS = 1.0
DRAIN_SECONDS = 10.0  # how long a stop waits for the batch being written (`WritePipeline.drain`)


def build_broker(bootstrap_servers: str, client_id: str) -> KafkaBroker:
    """A broker whose subscribers open a process span continuing the record's `traceparent`."""
    return KafkaBroker(bootstrap_servers, client_id=client_id, logger=logging.getLogger(f"{client_id}.broker"),
                       middlewares=[KafkaTelemetryMiddleware()])


@dataclass
class Subscription:
    """What `subscribe_events` set up: the rebalance listener, and the write pipeline of a batch subscriber."""

    handover: HandOver
    pipeline: WritePipeline | None = None


def subscribe_events(broker: KafkaBroker, dispatcher: Dispatcher, topics: Sequence[str], group_id: str, *,
                     batch_handler: BatchHandler | None = None, max_records: int = 1000) -> Subscription:
    """Consume the logical `topics` as `group_id`, one record at a time or in batches."""
    physical = [dispatcher.names.physical(topic) for topic in topics]
    # Our parser and decoder hand the dispatcher the records untouched: FastStream's own would
    # decode headers and JSON first, and a record they cannot read would be redelivered forever.
    # `no_reply`: a `reply_to` header sent by a producer must not make a consumer publish.
    handover = HandOver()
    common = dict(group_id=group_id, auto_offset_reset="earliest", parser=parse_keeping_raw_records,
                  decoder=raw_records, no_reply=True, listener=handover)
    redelivery = Redelivery()

    if batch_handler is None:
        @broker.subscriber(*physical, ack_policy=AckPolicy.NACK_ON_ERROR, **common)
        async def on_record(message: KafkaMessage) -> None:
            record = RawRecord.from_consumer_record(message.raw_message)
            async with handover.in_hand():
                await redelivery.guard(record, dispatcher.dispatch(record))
                await commit(message)
            release_records(message)

        return Subscription(handover)
    # MANUAL: the pipeline commits each batch's own offsets once its effects are durable (FastStream would
    # commit the consumer's position, which may be past the next batch already).
    pipeline = WritePipeline(dispatcher, batch_handler, handover, redelivery)

    @broker.subscriber(*physical, batch=True, max_records=max_records, batch_timeout_ms=100,
                       ack_policy=AckPolicy.MANUAL, **common)
    async def on_batch(message: KafkaMessage) -> None:
        await pipeline.handle(message)

    return Subscription(handover, pipeline)


class WritePipeline:
    """A batch subscriber that decodes batch N+1 while batch N's effects are being written.

    FastStream hands one batch at a time and fetches the next only when the handler returns, so
    a batch's database round trips never overlapped the next one's fetching and decoding: the
    metrics worker was ~60 % busy, waiting on its ~6 round trips per batch. Here the handler
    decodes its batch, waits until the previous batch's writes and commit are done, then starts
    its own writes in a task and returns: the next batch is fetched and decoded meanwhile. Effects
    stay in order (a batch is applied only after the previous one is durable and committed) and
    each batch's offsets are committed after its effects, in order; so a crash at any point is
    what it was (the uncommitted batches are delivered again and applied idempotently).

    A batch whose writes fail (a transient error) rewinds its partitions to its first records
    after a pause; a batch decoded meanwhile, or fetched before that seek, is dropped and its
    other partitions rewound too, until each rewound partition is delivered from where it was
    rewound to: everything from the failed batch on is delivered again, in order.
    """

    def __init__(self, dispatcher: Dispatcher, batch_handler: BatchHandler, handover: HandOver,
                 redelivery: Redelivery):
        self.dispatcher = dispatcher
        self.batch_handler = batch_handler
        self.handover = handover
        self.redelivery = redelivery
        self._writing: asyncio.Task[dict[TopicPartition, int]] | None = None  # returns where it rewound to
        self._rewound: dict[TopicPartition, int] = {}  # partitions sought back, and to where, until delivered
        self._closed = False
        handover.pipeline = self

    async def handle(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        records = [RawRecord.from_consumer_record(r) for r in raw]
        with self.handover.holding():
            decoded: list[PreparedBatch] = []

            async def decode() -> None:
                decoded.append(await self.dispatcher.decode_batch(records))

            try:  # transient only (a DLQ that cannot be written): decoding touches nothing else
                await self.redelivery.guard(records[0], decode())
            except NackMessage:
                pass
            if self._writing is not None:
                # Shielded: a stop cancels this handler, not the writes in flight (`drain` waits for them).
                self._rewound.update(await asyncio.shield(self._writing))
                self._writing = None
            spans = batch_offsets(raw)
            # After a rewind, a partition's records count only from where it was rewound to: records
            # fetched before the seek (this batch was decoded while the failed one was written) are dropped.
            stale = any(self._rewound.get(partition, first) != first for partition, (first, _) in spans.items())
            if stale or self._closed or not decoded:
                for partition, (first, _) in spans.items():
                    self._rewound[partition] = self._rewound.get(partition, first)
                    seek(message.consumer, partition, self._rewound[partition])
                return
            for partition in spans:
                self._rewound.pop(partition, None)
            self.handover.take()  # until this batch is committed: a rebalance waits for it
            self._writing = asyncio.create_task(self._write(message, records, decoded[0]))

    async def _write(self, message: KafkaMessage, records: Sequence[RawRecord],
                     prepared: PreparedBatch) -> dict[TopicPartition, int]:
        """Apply and commit the batch; if it fails, rewind its partitions and return where to."""
        consumer, raw = message.consumer, message.raw_message
        try:
            try:
                await self.redelivery.guard(records[0], self.dispatcher.apply_batch(prepared, self.batch_handler))
            except NackMessage:
                starts = {partition: first for partition, (first, _) in batch_offsets(raw).items()}
                for partition, first in starts.items():
                    seek(consumer, partition, first)
                return starts
            await commit_offsets(consumer, raw)
            release_records(message)  # this task's context holds the message past the commit (see there)
            return {}
        finally:
            self.handover.release()

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """Before the consumer stops: no new batch is started, the one being written finishes and commits.

        At most `timeout` seconds (a database that does not answer must not hold a stop forever): a batch
        still being written then is left uncommitted, and delivered again to the next owner."""
        self._closed = True
        if self._writing is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writing), timeout)
            except TimeoutError:
                log.warning("a batch was still being written after %.0f s; stopping without its commit", timeout)

    def reopen(self) -> None:
        """When the consumer starts (again): batches are written again, from the committed offsets."""
        self._closed = False
        self.forget_rewinds()

    def forget_rewinds(self) -> None:
        """Partitions (re)assigned start at their committed offsets: earlier rewinds say nothing any more."""
        self._rewound.clear()


def batch_offsets(raw: Sequence[Any]) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition, the first and last offset of a batch of consumer records."""
    spans: dict[TopicPartition, tuple[int, int]] = {}
    for record in raw:
        partition = TopicPartition(record.topic, record.partition)
        first, last = spans.get(partition, (record.offset, record.offset))
        spans[partition] = (min(first, record.offset), max(last, record.offset))
    return spans


def seek(consumer: Any, partition: TopicPartition, offset: int) -> None:
    try:
        consumer.seek(partition, offset)
    except KafkaError as error:  # no longer assigned: its next owner starts at the committed offset
        log.info("not rewinding %s: %s", partition, type(error).__name__)


async def commit_offsets(consumer: Any, raw: Sequence[Any]) -> None:
    """Commit exactly this batch's offsets (the consumer's position may be past the next batch already)."""
    try:
        await consumer.commit({partition: last + 1 for partition, (_, last) in batch_offsets(raw).items()})
    except Exception as error:  # the effects are durable: the next commit covers these offsets, or the next owner
        log.warning("offsets not committed (%s): the next owner of the partitions applies the records again",
                    type(error).__name__)


class HandOver(ConsumerRebalanceListener):
    """A consumer gives its partitions up only between batches, the batch in hand done and committed.

    Without it, a rebalance (a second worker process joining the group, one leaving) took the
    partitions away while a batch was in hand: its effects were durable but its offsets not
    committed, so the next owner applied the batch again. Harmless (every handler is idempotent)
    but costly: the metrics worker then reads that batch's claims back one by one, each a scan
    of every stored claim on FerretDB 1.x (48.5 ms of database time per 1,000 events with two
    processes, bench/README.md). aiokafka awaits `on_partitions_revoked` before rejoining, keeps
    heartbeating meanwhile, and accepts the commit of the generation still current; while the
    reassignment is in progress `getmany` hands out no records, so no new batch starts. A batch
    that ends in a transient error leaves (nacked, not committed) as before: its next owner
    applies it again, idempotently. A crash is the same as before: nothing here is needed for
    correctness, only to avoid redoing the work. With a `WritePipeline`, a batch is in hand from
    its decoding until its commit, so the rebalance waits for the one being written and the one
    decoded meanwhile.
    """

    def __init__(self) -> None:
        self._in_hand = 0  # batches handed to the dispatcher and not yet committed
        self._idle = asyncio.Event()
        self._idle.set()
        self.revoking = asyncio.Event()  # set while a rebalance waits for the batches in hand (tests watch it)
        self.pipeline: WritePipeline | None = None

    def take(self) -> None:
        self._in_hand += 1
        self._idle.clear()

    def release(self) -> None:
        self._in_hand -= 1
        if self._in_hand == 0:
            self._idle.set()

    @contextmanager
    def holding(self) -> Iterator[None]:
        self.take()
        try:
            yield
        finally:
            self.release()

    @asynccontextmanager
    async def in_hand(self) -> AsyncIterator[None]:
        """Held from handing a batch to the dispatcher until its offsets are committed."""
        with self.holding():
            yield

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.revoking.set()
        try:
            await self._idle.wait()
        finally:
            self.revoking.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self.pipeline is not None:
            self.pipeline.forget_rewinds()


async def commit(message: KafkaMessage) -> None:
    """Commit the offsets of what was handled, now (inside `HandOver.in_hand`), not after the handler.

    If the group moved on meanwhile (this member was dropped: a long stall), the commit fails:
    the records go to their next owner, which applies them again idempotently. FastStream then
    skips its own acknowledgement (which would fail the same way)."""
    try:
        await message.ack()
    except KafkaError as error:
        log.warning("offsets not committed (%s): the next owner of the partitions applies the records again",
                    type(error).__name__)
        message.committed = AckStatus.ACKED


async def parse_keeping_raw_records(raw: Any, default_parser: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's parser, fed a copy of the first record whose headers are readable text; the message keeps
    the original records.

    Our decoder takes the records from `raw_message` (`raw_records`), so what FastStream parses serves only
    its own bookkeeping (message id, logging, tracing): the first record is enough. Parsing (and copying)
    every record of a batch was a fifth of the metrics worker's time.
    """
    first = raw[0] if isinstance(raw, tuple) else raw
    readable = replace(first, headers=[(name, (value or b"").decode("utf-8", errors="replace").encode())
                                       for name, value in first.headers or ()])
    message = await default_parser((readable,) if isinstance(raw, tuple) else readable)
    message.raw_message = raw
    return message


def release_records(message: Any) -> None:
    """Once the records are handled, the message keeps only the first one's position (no key, value, headers).

    FastStream keeps the message in the handling's context (a context variable), and every timer
    started in that context holds the context until the timer's deadline, even when cancelled: the
    offset commit (after the handler, or in the write pipeline's task) waits on aiokafka's 40 s request
    timeout (`request_timeout_ms`), cancelled at once but left in the event loop's heap for 40 s. So each message lived 40 s after its
    commit: for the metrics worker, ~15-40 batches of 2,500 records (~2.2 KB each with their headers),
    60-120 MB, and the peak RSS of one process past 300 MB at 1,000,000 events (bench/README.md).
    Only after success: a nack (the handler raised) seeks back to the records' offsets.
    """
    raw = message.raw_message
    first = raw[0] if isinstance(raw, tuple) else raw
    position = replace(first, key=None, value=None, headers=[])
    message.raw_message = (position,) if isinstance(raw, tuple) else position
    message.clear_cache()  # the decoded body: our decoder returns the records themselves


async def raw_records(message: Any) -> Any:
    """The "decoded" body is the record (or batch) itself: decoding is the dispatcher's job."""
    return message.raw_message


class Redelivery:
    """Whatever escapes the dispatcher (a transient error, a DLQ that cannot be written) is retried.

    The record is nacked after a pause: FastStream seeks back, so its offset is never
    committed and the partition waits for it. Its failure is logged once, not on every
    redelivery.
    """

    def __init__(self) -> None:
        self._failing: tuple[str, int, int] | None = None

    async def guard(self, first: RawRecord, work: Awaitable[None]) -> None:
        position = (first.topic, first.partition, first.offset)
        try:
            await work
        except Exception as error:
            if position != self._failing:
                log.warning("%s at %s[%d]@%d; the record will be delivered again until it succeeds",
                            type(error).__name__, *position, exc_info=True)
                self._failing = position
            await asyncio.sleep(TRANSIENT_PAUSE_SECONDS)
            raise NackMessage() from error
        if position == self._failing:
            log.info("%s[%d]@%d went through after redelivery", *position)
        self._failing = None


async def run_until_signalled(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]],
                              background: Callable[[asyncio.Event], Awaitable[None]] | None = None) -> None:
    """Start, run `background(stop_event)` if given, and stop cleanly on SIGTERM/SIGINT."""
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    await start()
    try:
        if background is not None:
            await background(stop_event)
        await stop_event.wait()
    finally:
        await stop()


def tune_garbage_collection(young_threshold: int) -> None:
    """Fewer, cheaper garbage collections for a consumer that handles batches of thousands of records.

    With Python's default (a young collection every 700 allocations), a batch's own objects live
    through many collections, get promoted, and keep triggering full collections that walk the
    whole heap: everything imported, and what a worker remembers (the metrics worker's recent
    claims). Measured on the metrics pipeline (200,000 events, one process): 8,010 events per
    CPU-second with the default, 13,228 with a threshold of 50,000 and the start-up objects frozen.
    Objects alive at start-up (modules, settings, clients) are moved out of the collector's sight
    once (`gc.freeze`): they live as long as the process anyway. Cyclic garbage waits a little
    longer to be collected, a few megabytes at most.
    """
    if young_threshold <= 0:
        return
    freeze_startup_objects()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


class ServiceWorker:
    """A service's `worker` process: FastStream consumers, the outbox relay, periodic jobs.

    Register consumers with `consume(...)` before `start()`. Tests start and stop
    it in-process; `main.py` calls `run()`, which stops on SIGTERM.
    """

    def __init__(self, settings: ServiceSettings, client_id: str,
                 outbox_collections: Sequence[AsyncCollection] = (),
                 outbox_queues: Sequence[AsyncCollection] = (),
                 background: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
                 outbox_sweep_slice: int | None = None,
                 outbox_swept_queues: Sequence[AsyncCollection] = (),
                 outbox_written_here: bool = False):
        self.settings = settings
        configure_tracing(settings.service_name, export=settings.otlp_endpoint is not None)
        self.names = settings.topics
        self.publisher = EventPublisher(settings.kafka_bootstrap_servers, self.names, client_id=client_id)
        self.broker = build_broker(settings.kafka_bootstrap_servers, client_id)
        self.relay = OutboxRelay(list(outbox_collections), self.publisher, settings.outbox_poll_seconds,
                                 sweep_interval=settings.outbox_sweep_seconds, queues=outbox_queues,
                                 sweep_slice=outbox_sweep_slice, swept_queues=outbox_swept_queues,
                                 hints_from_this_process=outbox_written_here)
        relayed = outbox_collections or outbox_queues
        self._background = [self.relay.run, *background] if relayed else list(background)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.subscriptions: list[Subscription] = []  # one per `consume`

    def consume(self, topics: Sequence[str], group_id: str, handlers: Mapping[type[Event], Handler],
                batch_handler: BatchHandler | None = None, max_records: int = 1000,
                max_attempts: int = 3, ledger: ProcessedEvents | None = None,
                relevant: Callable[[Event], bool] | None = None) -> Dispatcher:
        """Subscribe `handlers` to `topics`. Pass a `ledger` (a collection of the service's own
        database) so that events re-published by a producer's relay after a crash apply once, and
        `relevant` to skip (before the ledger) events of a handled type that the handlers ignore."""
        dispatcher = Dispatcher(self.names, self.publisher, handlers, max_attempts=max_attempts, ledger=ledger,
                                group_id=group_id, max_value_bytes=self.settings.max_event_bytes, relevant=relevant)
        self.subscriptions.append(subscribe_events(self.broker, dispatcher, topics, group_id,
                                                   batch_handler=batch_handler, max_records=max_records))
        return dispatcher

    async def start(self) -> None:
        await ensure_topics(self.settings.kafka_bootstrap_servers, self.names, self.settings.topic_partitions)
        await self.publisher.start()
        self._stop.clear()
        # Background jobs (relay, schedulers) first: joining the consumer group can wait
        # for a killed predecessor's session to expire, and they need not wait for that.
        self._tasks = [asyncio.create_task(job(self._stop)) for job in self._background]
        if self.broker.subscribers:
            for subscription in self.subscriptions:
                if subscription.pipeline is not None:
                    subscription.pipeline.reopen()
            await self.broker.start()
        tune_garbage_collection(self.settings.worker_gc_young_threshold)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._tasks = []
        await self.stop_consuming()
        await self.publisher.stop()

    async def stop_consuming(self) -> None:
        """Stop the consumers: the batches being written finish and are committed first."""
        for subscription in self.subscriptions:
            if subscription.pipeline is not None:
                await subscription.pipeline.drain()
        if self.broker.subscribers:
            await self.broker.stop()

    async def run(self) -> None:
        await run_until_signalled(self.start, self.stop)
