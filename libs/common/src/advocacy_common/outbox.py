"""Transactional outbox without multi-document transactions.

A state change and the events it causes are one single-document write: the
pending envelopes ride in the changed document under `_outbox`. The relay
publishes them in order with the idempotent producer and only then pulls them
out. If the relay dies between publish and clear, the next run publishes again:
at-least-once, never lost. Consumers are idempotent (event ids, watermarks), so
a re-publication changes nothing downstream.

This works on MongoDB and on FerretDB 1.x (no transactions, no change streams):
the relay polls with a short interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from .envelope import Envelope
from .publishing import EventPublisher

OUTBOX_FIELD = "_outbox"
log = logging.getLogger(__name__)


def outbox_entries(items: Iterable[tuple[str, Envelope]]) -> list[dict[str, Any]]:
    """Pending entries for (logical topic, envelope) pairs."""
    return [{"id": env.id, "topic": topic, "envelope": env.to_document()} for topic, env in items]


def with_outbox(update: dict[str, Any], items: Iterable[tuple[str, Envelope]]) -> dict[str, Any]:
    """Add pending events to a MongoDB update document (same atomic write)."""
    entries = outbox_entries(items)
    if not entries:
        return update
    merged = dict(update)
    push = dict(merged.get("$push", {}))
    push[OUTBOX_FIELD] = {"$each": entries}
    merged["$push"] = push
    return merged


def new_document_with_outbox(document: dict[str, Any], items: Iterable[tuple[str, Envelope]]) -> dict[str, Any]:
    """A document to insert, carrying its pending events."""
    return {**document, OUTBOX_FIELD: outbox_entries(items)}


def without_outbox(document: dict[str, Any] | None) -> dict[str, Any] | None:
    """Strip the relay's field before handing a document to callers."""
    if document is None:
        return None
    return {k: v for k, v in document.items() if k != OUTBOX_FIELD}


class OutboxRelay:
    """Publishes pending events of the given collections, then clears them."""

    def __init__(self, collections: list[AsyncCollection], publisher: EventPublisher,
                 poll_interval: float = 0.1, batch_size: int = 200,
                 after_publish: Callable[[], Awaitable[None] | None] | None = None):
        self.collections = collections
        self.publisher = publisher
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        # Test hook: lets the crash test kill the process between publish and clear.
        self._after_publish = after_publish

    async def run_once(self) -> int:
        published = 0
        for collection in self.collections:
            cursor = collection.find({f"{OUTBOX_FIELD}.0": {"$exists": True}},
                                     projection={OUTBOX_FIELD: 1}).limit(self.batch_size)
            async for document in cursor:
                published += await self._relay_document(collection, document)
        return published

    async def _relay_document(self, collection: AsyncCollection, document: dict[str, Any]) -> int:
        entries = document.get(OUTBOX_FIELD) or []
        if not entries:
            return 0
        await self.publisher.publish_many(
            [(entry["topic"], Envelope.from_document(entry["envelope"])) for entry in entries])
        if self._after_publish is not None:
            outcome = self._after_publish()
            if asyncio.iscoroutine(outcome):
                await outcome
        # $pullAll with the entries exactly as read: FerretDB 1.x's $pull ignores
        # conditions on sub-document fields, exact matches work everywhere. Events
        # pushed meanwhile are different documents and stay pending.
        await collection.update_one({"_id": document["_id"]}, {"$pullAll": {OUTBOX_FIELD: entries}})
        return len(entries)

    async def flush(self, collection: AsyncCollection, document_id: Any) -> int:
        """Publish one document's pending events now (e.g. right after an opt-out).

        The relay loop remains the safety net: if this fails, the events stay
        pending and are published on its next pass.
        """
        document = await collection.find_one({"_id": document_id}, projection={OUTBOX_FIELD: 1})
        return await self._relay_document(collection, document) if document else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; errors are logged and retried, never fatal."""
        while not stop.is_set():
            try:
                published = await self.run_once()
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
