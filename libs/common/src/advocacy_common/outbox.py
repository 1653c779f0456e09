"""Transactional outbox without multi-document transactions.

A state change and the events it causes are one single-document write: the
pending envelopes ride in the changed document under `_outbox`. The relay
publishes them in order with the idempotent producer and only then pulls them
out. If the relay dies between publish and clear, the next run publishes again:
at-least-once, never lost. Consumers are idempotent (event ids, watermarks), so
a re-publication changes nothing downstream.

This works on MongoDB and on FerretDB 1.x (no transactions, no change streams).
Finding pending events by a query on `_outbox` means scanning a collection
(FerretDB pushes no filter but a bare `_id` down to SQLite), so writers also
leave a *hint* (`notify_outbox`: a tiny document in `_outbox_hints` naming the
changed document) right after their write. The relay polls the hints every
`poll_interval` and flushes the documents they name; it sweeps the collections
for pending events only at start and every `sweep_interval` (or, with
`sweep_slice`, a few of them per interval in turn), which catches a writer that
died between its write and its hint. A relay told that only its own process
writes its collections (`hints_from_this_process`) does not poll: `notify_outbox`
wakes it, and the sweeps remain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Iterable
from typing import Any

from bson import Binary
from pydantic_core import from_json
from pymongo.asynchronous.collection import AsyncCollection

from .envelope import Envelope
from .publishing import EventPublisher

OUTBOX_FIELD = "_outbox"
HINTS_COLLECTION = "_outbox_hints"
log = logging.getLogger(__name__)
# Relays of this process waiting for hints of a database (`OutboxRelay(hints_from_this_process=True)`),
# woken by `notify_outbox` once the hint is stored.
_LOCAL_RELAYS: dict[str, set[asyncio.Event]] = {}


PACKED_ENVELOPE = "envelope_json"


def outbox_entries(items: Iterable[tuple[str, Envelope]]) -> list[dict[str, Any]]:
    """Pending entries for (logical topic, envelope) pairs."""
    return [{"id": env.id, "topic": topic, "envelope": env.to_document()} for topic, env in items]


def packed_outbox_entries(items: Iterable[tuple[str, Envelope]]) -> list[dict[str, Any]]:
    """Pending entries with each envelope as one JSON string: for queues (`OutboxRelay.queues`), whose
    entries nothing but the relay reads. FerretDB 1.x converts every field of a document it stores or
    returns (the ~35 of a nested envelope cost it more than a string of the same bytes); on MongoDB it
    is smaller BSON too. The relay reads both forms."""
    return [{"id": env.id, "topic": topic, PACKED_ENVELOPE: env.model_dump_json()} for topic, env in items]


# A queue document's events as one zlib-compressed JSON array of [topic, envelope] pairs (`compressed_outbox`).
COMPRESSED_OUTBOX_FIELD = "_outbox_z"
# zlib's fastest level: a batch of 18 click events (16 KB of JSON) becomes 1.7 KB at level 1, 1.6 KB at 6.
COMPRESSION_LEVEL = 1


def compressed_outbox(items: Iterable[tuple[str, Envelope]]) -> Binary:
    """Pending events as one compressed binary field: for queues (`OutboxRelay.queues`), whose documents
    nothing but the relay reads and which are deleted, never updated, once relayed. FerretDB 1.x converts
    every field and string it stores and returns, and a relay's read and `$in` delete decode every
    document they match: one binary field of ~1/10 of the bytes cost its database 1.9 ms per queue
    document (insert, read, delete) instead of 7.3 with the events as JSON strings (bench/README.md)."""
    pairs = ",".join(f"[{json.dumps(topic)},{envelope.model_dump_json()}]" for topic, envelope in items)
    return Binary(zlib.compress(f"[{pairs}]".encode(), COMPRESSION_LEVEL))


def queued_events(document: dict[str, Any]) -> list[tuple[str, Envelope]]:
    """A queue document's (logical topic, envelope) pairs, in order: compressed, or pending entries as
    written by earlier releases (both may be there; the entries came first)."""
    events = [(entry["topic"], entry_envelope(entry)) for entry in document.get(OUTBOX_FIELD) or []]
    compressed = document.get(COMPRESSED_OUTBOX_FIELD)
    if compressed is not None:
        events += [(topic, Envelope.model_validate(envelope))
                   for topic, envelope in from_json(zlib.decompress(compressed))]
    return events


def entry_envelope(entry: dict[str, Any]) -> Envelope:
    """The envelope of a pending entry, packed or not."""
    packed = entry.get(PACKED_ENVELOPE)
    if packed is not None:
        return Envelope.model_validate_json(packed)
    return Envelope.from_document(entry["envelope"])


async def notify_outbox(collection: AsyncCollection, document_id: Any) -> None:
    """Tell the relay that `document_id` has pending events (call right after the write).

    Best effort by design: if this is lost, the relay's sweep still finds the events.
    """
    hint_id = f"{collection.name}\x1f{document_id}"
    try:
        await collection.database[HINTS_COLLECTION].update_one(
            {"_id": hint_id}, {"$set": {"collection": collection.name, "document_id": document_id}}, upsert=True)
    except Exception:
        log.warning("could not leave an outbox hint for %s; the sweep will find it", hint_id, exc_info=True)
        return
    for waiting in _LOCAL_RELAYS.get(collection.database.name, ()):
        waiting.set()


class OutboxRelay:
    """Publishes pending events of the given collections, then clears them.

    Every pass works in batches of up to `batch_size` documents: one read of the hints (or of a queue),
    the documents' reads side by side, one `publish_many` for all their events (order kept per document),
    then the clears side by side. The per-event cost is then a share of a few round trips instead of five.

    `queues` are collections whose documents exist only to carry events (e.g. distribution's click
    events, `compressed_outbox`): every document in them is pending, so the relay reads them directly
    (no hints, no sweep) and deletes each document once Kafka has its events. They stay as small as the
    backlog, which keeps their reads and deletes cheap on FerretDB 1.x, where every filter costs a scan of
    the collection.
    """

    def __init__(self, collections: list[AsyncCollection], publisher: EventPublisher,
                 poll_interval: float = 0.1, batch_size: int = 200, sweep_interval: float = 10.0,
                 queues: Iterable[AsyncCollection] = (), sweep_slice: int | None = None,
                 swept_queues: Iterable[AsyncCollection] = (), hints_from_this_process: bool = False):
        self.collections = collections
        self.publisher = publisher
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.sweep_interval = sweep_interval
        self.queues = list(queues)
        # Queues read only by the sweeps (at start and every sweep turn), not on every pass: those of earlier
        # releases, which only an API still running the earlier release fills (e.g. during an upgrade).
        self.swept_queues = list(swept_queues)
        # How many collections the periodic sweep visits per `sweep_interval` (the next ones in turn, one at a
        # time spread over the interval); None: all of them at once. A service that spreads an outbox
        # collection over many buckets sweeps a few per interval, so that no pass of the relay waits for a
        # scan of everything it ever stored (the start-up sweep still visits all).
        self.sweep_slice = sweep_slice
        self._next_swept = 0
        # Once, not every pass: a service with bucketed outbox collections names hundreds of them, and
        # building their hints collections each pass was a tenth of a busy relay's CPU (py-spy).
        self._by_name = {c.name: c for c in collections}
        self._hints = list({c.database: c.database[HINTS_COLLECTION] for c in collections}.values())
        # Only this process writes the hinted collections (e.g. the metrics worker's export parts): the hints
        # are read when `notify_outbox` wakes the relay, not every `poll_interval` (each poll of an empty
        # hints collection was a round trip and ~20 ms of database time per 1,000 events of the metrics
        # worker, which relays almost nothing). A hint of another process (one of an earlier release, or
        # one that died before its relay ran) is read on the next wake; its document is swept anyway.
        self.hints_from_this_process = hints_from_this_process and not self.queues

    async def run_hinted(self) -> int:
        """Flush the documents named by hints (a batch per hints collection), dropping the hints first.

        A hint is dropped before its document is read: a writer that pushes events after that read
        leaves its hint again (an upsert), so the next pass sees it; a hint dropped by a relay that then
        dies is the sweep's to catch, as a lost hint always was.
        """
        published = 0
        by_name = self._by_name
        for hints in self._hints:
            batch = [hint async for hint in hints.find({}).limit(self.batch_size)
                     if hint.get("collection") in by_name]  # another relay's hints are left to it
            if not batch:
                continue
            # `$in` scans the hints collection on FerretDB 1.x: it holds only the hints not yet followed.
            await hints.delete_many({"_id": {"$in": [hint["_id"] for hint in batch]}})
            # One hint per document (its `_id` names both), so no document is read twice.
            targets = [(by_name[hint["collection"]], hint.get("document_id")) for hint in batch]
            documents = await asyncio.gather(*(collection.find_one({"_id": document_id}, projection={OUTBOX_FIELD: 1})
                                               for collection, document_id in targets))
            published += await self._relay_documents(
                [(collection, document) for (collection, _), document in zip(targets, documents) if document])
        return published

    async def run_queues(self, queues: list[AsyncCollection] | None = None) -> int:
        """Publish a batch of each queue's documents (default: the queues read on every pass), then delete them."""
        published = 0
        for queue in self.queues if queues is None else queues:
            documents = await queue.find({}, projection={OUTBOX_FIELD: 1, COMPRESSED_OUTBOX_FIELD: 1}) \
                .limit(self.batch_size).to_list()
            events = [event for document in documents for event in queued_events(document)]
            if events:
                # Batched, without a send span per event (`publish_batched`): a queue carries many.
                await self.publisher.publish_batched(events)
            if documents:
                # The documents were inserted with their events and never change: once Kafka has the
                # events nothing is left to keep. `$in` scans on FerretDB 1.x, over the backlog only.
                await queue.delete_many({"_id": {"$in": [document["_id"] for document in documents]}})
            published += len(events)
        return published

    async def run_once(self, collections: list[AsyncCollection] | None = None) -> int:
        """Sweep `collections` (default: every collection) for pending events (the safety net behind hints),
        and the queues."""
        published = 0
        for collection in self.collections if collections is None else collections:
            while True:  # pages of `batch_size` until no pending document is left
                cursor = collection.find({f"{OUTBOX_FIELD}.0": {"$exists": True}},
                                         projection={OUTBOX_FIELD: 1}).limit(self.batch_size)
                documents = [document async for document in cursor]
                published += await self._relay_documents([(collection, document) for document in documents])
                if len(documents) < self.batch_size:
                    break
        while queued := await self.run_queues():
            published += queued
        while queued := await self.run_queues(self.swept_queues):  # apart: one read each while they are empty
            published += queued
        return published

    def _sweep_turn(self, count: int) -> list[AsyncCollection]:
        """The next `count` collections in turn, round and round."""
        start, self._next_swept = self._next_swept, (self._next_swept + count) % len(self.collections)
        return [self.collections[(start + i) % len(self.collections)] for i in range(count)]

    async def _relay_documents(self, documents: list[tuple[AsyncCollection, dict[str, Any]]]) -> int:
        """Publish the events of all `documents` at once, then clear each document's published entries."""
        pending = [(collection, document, document.get(OUTBOX_FIELD) or []) for collection, document in documents]
        pending = [item for item in pending if item[2]]
        if not pending:
            return 0
        await self.publisher.publish_many([(entry["topic"], entry_envelope(entry))
                                           for _, _, entries in pending for entry in entries])
        await asyncio.gather(*(self.clear_published(collection, document["_id"], entries)
                               for collection, document, entries in pending))
        return sum(len(entries) for _, _, entries in pending)

    async def clear_published(self, collection: AsyncCollection, document_id: Any,
                              entries: list[dict[str, Any]]) -> None:
        """Remove entries that Kafka acknowledged from the document's outbox."""
        # $pullAll with the entries exactly as read: FerretDB 1.x's $pull ignores
        # conditions on sub-document fields, exact matches work everywhere. Events
        # pushed meanwhile are different documents and stay pending.
        await collection.update_one({"_id": document_id}, {"$pullAll": {OUTBOX_FIELD: entries}})

    async def flush(self, collection: AsyncCollection, document_id: Any) -> int:
        """Publish one document's pending events now (e.g. right after an opt-out).

        The relay loop remains the safety net: if this fails, the events stay
        pending and are published on its next pass.
        """
        document = await collection.find_one({"_id": document_id}, projection={OUTBOX_FIELD: 1})
        return await self._relay_documents([(collection, document)]) if document else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll hints (or wait to be woken), sweep now and then, until `stop` is set; errors are logged and
        retried."""
        if not self.hints_from_this_process:
            await self._run(stop, None)
            return
        woken = asyncio.Event()
        databases = {hints.database.name for hints in self._hints}
        for name in databases:
            _LOCAL_RELAYS.setdefault(name, set()).add(woken)
        try:
            await self._run(stop, woken)
        finally:
            for name in databases:
                _LOCAL_RELAYS[name].discard(woken)

    async def _run(self, stop: asyncio.Event, woken: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        next_sweep, swept_all = loop.time(), False
        while not stop.is_set():
            if woken is not None:
                woken.clear()  # before reading the hints: one stored during the pass wakes the next pass
            try:
                published = await self.run_hinted() + await self.run_queues()
                if loop.time() >= next_sweep and (not swept_all or self.sweep_slice is None
                                                  or self.sweep_slice >= len(self.collections)):
                    published += await self.run_once()
                    next_sweep, swept_all = loop.time() + self.sweep_interval, True
                elif loop.time() >= next_sweep:  # one collection, `sweep_slice` per interval
                    published += await self.run_once(self._sweep_turn(1))
                    next_sweep = loop.time() + self.sweep_interval / self.sweep_slice
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed; retrying")
                published, failed = 0, True
            else:
                failed = False
            if published == 0 and (woken is None or failed):
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_interval)
                except TimeoutError:
                    pass
            elif published == 0:
                await _first_set([stop, woken], timeout=max(0.0, next_sweep - loop.time()))


async def _first_set(events: list[asyncio.Event], timeout: float) -> None:
    """Until one of `events` is set, or `timeout` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
