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
for pending events only at start and every `sweep_interval`, which catches a
writer that died between its write and its hint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from .envelope import Envelope
from .publishing import EventPublisher

OUTBOX_FIELD = "_outbox"
HINTS_COLLECTION = "_outbox_hints"
log = logging.getLogger(__name__)


def outbox_entries(items: Iterable[tuple[str, Envelope]]) -> list[dict[str, Any]]:
    """Pending entries for (logical topic, envelope) pairs."""
    return [{"id": env.id, "topic": topic, "envelope": env.to_document()} for topic, env in items]


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


class OutboxRelay:
    """Publishes pending events of the given collections, then clears them."""

    def __init__(self, collections: list[AsyncCollection], publisher: EventPublisher,
                 poll_interval: float = 0.1, batch_size: int = 200, sweep_interval: float = 10.0):
        self.collections = collections
        self.publisher = publisher
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.sweep_interval = sweep_interval

    async def run_hinted(self) -> int:
        """Flush the documents named by hints, then drop the hints."""
        published = 0
        by_name = {c.name: c for c in self.collections}
        for hints in {c.database[HINTS_COLLECTION] for c in self.collections}:
            async for hint in hints.find({}).limit(self.batch_size):
                collection = by_name.get(hint.get("collection"))
                if collection is not None:
                    published += await self.flush(collection, hint.get("document_id"))
                    await hints.delete_one({"_id": hint["_id"]})
        return published

    async def run_once(self) -> int:
        """Sweep every collection for pending events (the safety net behind hints)."""
        published = 0
        for collection in self.collections:
            while True:  # pages of `batch_size` until no pending document is left
                cursor = collection.find({f"{OUTBOX_FIELD}.0": {"$exists": True}},
                                         projection={OUTBOX_FIELD: 1}).limit(self.batch_size)
                documents = [document async for document in cursor]
                for document in documents:
                    published += await self._relay_document(collection, document)
                if len(documents) < self.batch_size:
                    break
        return published

    async def _relay_document(self, collection: AsyncCollection, document: dict[str, Any]) -> int:
        entries = document.get(OUTBOX_FIELD) or []
        if not entries:
            return 0
        await self.publisher.publish_many(
            [(entry["topic"], Envelope.from_document(entry["envelope"])) for entry in entries])
        await self.clear_published(collection, document["_id"], entries)
        return len(entries)

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
        return await self._relay_document(collection, document) if document else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll hints, sweep now and then, until `stop` is set; errors are logged and retried."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while not stop.is_set():
            try:
                published = await self.run_hinted()
                if loop.time() >= next_sweep:
                    published += await self.run_once()
                    next_sweep = loop.time() + self.sweep_interval
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed; retrying")
                published = 0
            if published == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_interval)
                except TimeoutError:
                    pass
