"""FastStream glue for the `worker` process: subscribers that commit after the effect.

The subscriber acknowledges (commits) only when the dispatcher returned, i.e.
when the effect is durable or the record is in the DLQ. On a transient error (or
a DLQ that cannot be written) it nacks: FastStream seeks back and the record is
delivered again after a pause. FastStream never decodes a record itself: the
dispatcher does, so that a record nobody can read is dead-lettered, not retried.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

from pymongo.asynchronous.collection import AsyncCollection

from .collector import freeze_startup_objects
from .consuming import BatchHandler, Dispatcher, Handler, ProcessedEvents, RawRecord
from .events import Event
from .outbox import OutboxRelay
from .publishing import EventPublisher
from .settings import ServiceSettings
from .telemetry import configure_tracing
from .topics import ensure_topics

log = logging.getLogger(__name__)
TRANSIENT_PAUSE_SECONDS = 1.0


def build_broker(bootstrap_servers: str, client_id: str) -> KafkaBroker:
    """A broker whose subscribers open a process span continuing the record's `traceparent`."""
    return KafkaBroker(bootstrap_servers, client_id=client_id, logger=logging.getLogger(f"{client_id}.broker"),
                       middlewares=[KafkaTelemetryMiddleware()])


def subscribe_events(broker: KafkaBroker, dispatcher: Dispatcher, topics: Sequence[str], group_id: str, *,
                     batch_handler: BatchHandler | None = None, max_records: int = 1000) -> None:
    """Consume the logical `topics` as `group_id`, one record at a time or in batches."""
    physical = [dispatcher.names.physical(topic) for topic in topics]
    # Our parser and decoder hand the dispatcher the records untouched: FastStream's own would
    # decode headers and JSON first, and a record they cannot read would be redelivered forever.
    # `no_reply`: a `reply_to` header sent by a producer must not make a consumer publish.
    common = dict(group_id=group_id, auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR,
                  parser=parse_keeping_raw_records, decoder=raw_records, no_reply=True)
    redelivery = Redelivery()

    if batch_handler is None:
        @broker.subscriber(*physical, **common)
        async def on_record(message: KafkaMessage) -> None:
            record = RawRecord.from_consumer_record(message.raw_message)
            await redelivery.guard(record, dispatcher.dispatch(record))
            release_records(message)
    else:
        @broker.subscriber(*physical, batch=True, max_records=max_records, batch_timeout_ms=100, **common)
        async def on_batch(message: KafkaMessage) -> None:
            records = [RawRecord.from_consumer_record(r) for r in message.raw_message]
            await redelivery.guard(records[0], dispatcher.dispatch_batch(records, batch_handler))
            release_records(message)


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
    offset commit after the handler waits on aiokafka's 40 s request timeout (`request_timeout_ms`),
    cancelled at once but left in the event loop's heap for 40 s. So each message lived 40 s after its
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
                 outbox_swept_queues: Sequence[AsyncCollection] = ()):
        self.settings = settings
        configure_tracing(settings.service_name, export=settings.otlp_endpoint is not None)
        self.names = settings.topics
        self.publisher = EventPublisher(settings.kafka_bootstrap_servers, self.names, client_id=client_id)
        self.broker = build_broker(settings.kafka_bootstrap_servers, client_id)
        self.relay = OutboxRelay(list(outbox_collections), self.publisher, settings.outbox_poll_seconds,
                                 sweep_interval=settings.outbox_sweep_seconds, queues=outbox_queues,
                                 sweep_slice=outbox_sweep_slice, swept_queues=outbox_swept_queues)
        relayed = outbox_collections or outbox_queues
        self._background = [self.relay.run, *background] if relayed else list(background)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def consume(self, topics: Sequence[str], group_id: str, handlers: Mapping[type[Event], Handler],
                batch_handler: BatchHandler | None = None, max_records: int = 1000,
                max_attempts: int = 3, ledger: ProcessedEvents | None = None,
                relevant: Callable[[Event], bool] | None = None) -> Dispatcher:
        """Subscribe `handlers` to `topics`. Pass a `ledger` (a collection of the service's own
        database) so that events re-published by a producer's relay after a crash apply once, and
        `relevant` to skip (before the ledger) events of a handled type that the handlers ignore."""
        dispatcher = Dispatcher(self.names, self.publisher, handlers, max_attempts=max_attempts, ledger=ledger,
                                group_id=group_id, max_value_bytes=self.settings.max_event_bytes, relevant=relevant)
        subscribe_events(self.broker, dispatcher, topics, group_id, batch_handler=batch_handler,
                         max_records=max_records)
        return dispatcher

    async def start(self) -> None:
        await ensure_topics(self.settings.kafka_bootstrap_servers, self.names, self.settings.topic_partitions)
        await self.publisher.start()
        self._stop.clear()
        # Background jobs (relay, schedulers) first: joining the consumer group can wait
        # for a killed predecessor's session to expire, and they need not wait for that.
        self._tasks = [asyncio.create_task(job(self._stop)) for job in self._background]
        if self.broker.subscribers:
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
        if self.broker.subscribers:
            await self.broker.stop()
        await self.publisher.stop()

    async def run(self) -> None:
        await run_until_signalled(self.start, self.stop)
