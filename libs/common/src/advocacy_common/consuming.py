"""Idempotent consumption: decoding, bounded retries, dead letters, watermarks.

Offsets are committed by the FastStream subscriber only after the handler
returned (see `worker.py`), so an effect is durable before its offset moves.
Handlers make their effects idempotent with `apply_once`: each document keeps,
per topic partition, the offset of the last event applied to it, written in the
same single-document update as the effect. An event delivered again finds its
offset at or below the watermark and changes nothing.

Watermarks catch redelivery of the same record. The outbox relay may also
re-publish an event after a crash, as a new record at a new offset with the
same CloudEvents id: the `ProcessedEvents` ledger catches that. The dispatcher
skips ids already in the ledger and records ids after their effect is durable;
a crash between effect and record is covered by the watermark on redelivery.
Both copies share the aggregate key, so they land on one partition, in order.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure, ServerSelectionTimeoutError

from .dlq import DeadLetterFailed, dead_letter_record, describe, send_dead_letter
from .envelope import Envelope, from_kafka
from .events import Event, UnknownEventType, decode_data
from .publishing import EventPublisher
from .repository import insert_once
from .telemetry import consuming_span
from .topics import TopicNames

log = logging.getLogger(__name__)

# Infrastructure failures: retrying the same message later will work, so the
# message is redelivered (never dead-lettered) until the dependency is back.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure, AutoReconnect, ServerSelectionTimeoutError, KafkaConnectionError,
    KafkaTimeoutError, TimeoutError, OSError, DeadLetterFailed,
)


@dataclass(frozen=True)
class Delivery:
    """One decoded event and where it came from."""

    envelope: Envelope
    event: Event
    topic: str  # logical name
    partition: int
    offset: int

    # Computed once per delivery: a batch handler asks for them several times per event (claims,
    # counters, activity), which made them properties 6 % of the metrics worker's CPU
    # (`functools.cached_property` takes a lock on Python 3.11: slower still).
    tenant_id: str = field(init=False, compare=False)
    watermark_key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Interned: a few distinct values, kept by the hundred thousand in what consumers remember.
        object.__setattr__(self, "tenant_id", sys.intern(self.envelope.tenantid or ""))
        object.__setattr__(self, "watermark_key", sys.intern(f"{self.topic.replace('.', '_')}_{self.partition}"))


Handler = Callable[[Delivery], Awaitable[Any]]
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[Any]]
DUPLICATE_KEY = 11000


def one_at_a_time(handlers: Mapping[type[Event], Handler]) -> BatchHandler:
    """A batch handler made of per-event handlers, applied in order. For idempotent handlers (apply_once,
    insert_once) whose consumer is bounded by what each record costs besides the handler: a batch shares
    one ledger lookup, one ledger insert and one offset commit (found by the chaos run: distribution's
    comment tallies, one record at a time, fell minutes behind the engagement topic). A failed batch is
    retried one event at a time by the dispatcher, which the handlers' idempotence makes safe."""

    async def handle(deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            with consuming_span(delivery.envelope, delivery.topic):
                await handlers[type(delivery.event)](delivery)

    return handle


@dataclass(frozen=True)
class RawRecord:
    topic: str  # physical name
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]

    @classmethod
    def from_consumer_record(cls, record: Any) -> RawRecord:
        return cls(record.topic, record.partition, record.offset, record.key, record.value, record.headers or ())


class ProcessedEvents:
    """Ids of events whose effect is durable, to ignore re-published copies.

    One small document per event id; `forget_before` prunes old entries (no TTL
    indexes on FerretDB), since re-publication happens within minutes of a crash.
    """

    def __init__(self, collection: AsyncCollection):
        self.collection = collection

    async def create_indexes(self) -> None:
        await self.collection.create_index("seen_at")

    async def already_processed(self, event_ids: Sequence[str]) -> set[str]:
        # One lookup per id by bare `_id`: the only filter FerretDB 1.x pushes down to
        # SQLite; an `$in` would scan the whole (ever-growing) ledger each time.
        ids = list(dict.fromkeys(event_ids))
        found = await asyncio.gather(*(self.collection.find_one({"_id": i}, projection={"_id": 1}) for i in ids))
        return {i for i, document in zip(ids, found, strict=True) if document is not None}

    async def record(self, event_ids: Sequence[str]) -> None:
        now = datetime.now(UTC)
        documents = [{"_id": event_id, "seen_at": now} for event_id in dict.fromkeys(event_ids)]
        if len(documents) == 1:
            await insert_once(self.collection, documents[0])
            return
        # One unordered insert for a batch: the ids already there fail alone (duplicate key), the rest go in.
        try:
            await self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise

    async def forget_before(self, cutoff: datetime) -> int:
        result = await self.collection.delete_many({"seen_at": {"$lt": cutoff}})
        return result.deleted_count

    async def prune(self, stop: asyncio.Event, keep: timedelta = timedelta(days=7),
                    every_seconds: float = 3600) -> None:
        """A worker background job: forget ids older than `keep` (no TTL indexes on FerretDB)."""
        while True:  # a pass at start, then one every `every_seconds` until stopped
            await self.forget_before(datetime.now(UTC) - keep)
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_seconds)
                return
            except TimeoutError:
                pass


class UnacceptableRecord(ValueError):
    """A record refused before decoding: a tombstone, an empty value, or a value over the size limit."""


DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
DECODE_TURN = 250  # records decoded between two turns of the event loop (`Dispatcher.decode_batch`)
PreparedBatch = dict[str, tuple[RawRecord, "Delivery"]]
_REMEMBERED_DEAD_LETTERS = 10_000


class Dispatcher:
    """Routes records to handlers by event class; retries, then dead-letters.

    Unknown event types are skipped (a topic carries types a consumer does not
    need). A record that cannot be decoded goes to the DLQ at once; a handler
    that keeps failing goes there after `max_attempts`; a transient
    infrastructure error, or a DLQ that cannot be written, is re-raised so the
    record is delivered again (its offset is not committed).
    """

    def __init__(self, names: TopicNames, publisher: EventPublisher,
                 handlers: Mapping[type[Event], Handler] | None = None,
                 max_attempts: int = 3, retry_backoff: float = 0.2, ledger: ProcessedEvents | None = None,
                 group_id: str = "", max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                 relevant: Callable[[Event], bool] | None = None):
        self.names = names
        # Events of a handled type that the handlers would ignore anyway (e.g. clicks for a comment tally):
        # skipped like unhandled types, before the ledger, which would otherwise look up and remember each.
        self.relevant = relevant
        self.ledger = ledger
        self.publisher = publisher
        self.handlers = dict(handlers or {})
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.group_id = group_id
        self.max_value_bytes = max_value_bytes
        # Positions already dead-lettered by this process: a batch redelivered after a
        # transient failure must not put its poison records in the DLQ a second time.
        self._dead_lettered: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    def decode(self, record: RawRecord) -> Delivery:
        if record.value is None:
            raise UnacceptableRecord("null value (tombstone)")
        if not record.value:
            raise UnacceptableRecord("empty value")
        if len(record.value) > self.max_value_bytes:
            raise UnacceptableRecord(f"value of {len(record.value)} bytes exceeds the limit of "
                                     f"{self.max_value_bytes} bytes")
        envelope = from_kafka(record.key, record.value, record.headers)
        event = decode_data(envelope.type, envelope.data)
        return Delivery(envelope, event, self.names.logical(record.topic), record.partition, record.offset)

    async def _decode_or_dead_letter(self, record: RawRecord) -> Delivery | None:
        try:
            delivery = self.decode(record)
        except UnknownEventType:
            return None
        except Exception as error:  # decoding touches no infrastructure: any failure is the record's
            await self.dead_letter(record, error, attempts=0)
            return None
        if type(delivery.event) not in self.handlers:
            return None
        if self.relevant is not None and not self.relevant(delivery.event):
            return None
        return delivery

    async def dispatch(self, record: RawRecord) -> None:
        delivery = await self._decode_or_dead_letter(record)
        if delivery is None:
            return
        if self.ledger is not None and await self.ledger.already_processed([delivery.envelope.id]):
            return
        handler = self.handlers[type(delivery.event)]
        with consuming_span(delivery.envelope, delivery.topic):
            applied = await self._with_retries(record, lambda: handler(delivery))
        if applied and self.ledger is not None:
            await self.ledger.record([delivery.envelope.id])

    async def dispatch_batch(self, records: Sequence[RawRecord], batch_handler: BatchHandler) -> None:
        """Hand many events to one handler (coalesced writes); isolate a poison one if it fails."""
        await self.apply_batch(await self.decode_batch(records), batch_handler)

    async def decode_batch(self, records: Sequence[RawRecord]) -> PreparedBatch:
        """The batch's deliveries by event id (poison records dead-lettered), ready for `apply_batch`.

        Gives the event loop a turn every `DECODE_TURN` records: a subscriber that decodes the next
        batch while the previous one's writes are in flight (`worker.WritePipeline`) lets those
        writes move on meanwhile, instead of one long stretch of decoding."""
        pairs: PreparedBatch = {}
        for number, record in enumerate(records, start=1):
            delivery = await self._decode_or_dead_letter(record)
            if delivery is not None:
                pairs.setdefault(delivery.envelope.id, (record, delivery))  # a re-published copy in the same batch
            if number % DECODE_TURN == 0:
                await asyncio.sleep(0)
        return pairs

    async def apply_batch(self, pairs: PreparedBatch, batch_handler: BatchHandler) -> None:
        """Apply a decoded batch (`decode_batch`): the ledger's check, the handler, the ledger's record."""
        pairs = dict(pairs)
        if self.ledger is not None:
            for event_id in await self.ledger.already_processed(list(pairs)):
                del pairs[event_id]
        if not pairs:
            return
        try:
            await batch_handler([d for _, d in pairs.values()])
            applied = list(pairs)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            log.warning("batch of %d failed; retrying one by one to isolate the cause", len(pairs), exc_info=True)
            applied = [event_id for event_id, (record, delivery) in pairs.items()
                       if await self._with_retries(record, lambda d=delivery: batch_handler([d]))]
        if self.ledger is not None and applied:
            await self.ledger.record(applied)

    async def _with_retries(self, record: RawRecord, call: Callable[[], Awaitable[Any]]) -> bool:
        """True once `call` succeeded; False when it kept failing and the record was dead-lettered."""
        last_error: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                await call()
                return True
            except TRANSIENT_ERRORS:
                raise
            except Exception as error:  # a poison message or a bug: bounded retries
                last_error = error
                # One warning (with the traceback) per record; the outcome is logged by dead_letter.
                log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                        "handler failed (attempt %d/%d) at %s[%d]@%d: %s", attempt, self.max_attempts,
                        record.topic, record.partition, record.offset, error, exc_info=attempt == 1)
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.retry_backoff * attempt)
        assert last_error is not None
        await self.dead_letter(record, last_error, attempts=self.max_attempts)
        return False

    async def dead_letter(self, record: RawRecord, error: BaseException, attempts: int) -> None:
        """Write `record` to its DLQ; `DeadLetterFailed` (transient) if Kafka did not take it."""
        position = (record.topic, record.partition, record.offset)
        if position in self._dead_lettered:
            return
        letter = dead_letter_record(record, error, attempts, self.group_id)
        await send_dead_letter(self.publisher, self.names.dlq(self.names.logical(record.topic)), letter)
        self._dead_lettered[position] = None
        if len(self._dead_lettered) > _REMEMBERED_DEAD_LETTERS:
            self._dead_lettered.popitem(last=False)
        log.error("dead-lettered %s[%d]@%d for group %s after %d attempt(s): %s", record.topic,
                  record.partition, record.offset, self.group_id or "-", attempts, describe(error))
