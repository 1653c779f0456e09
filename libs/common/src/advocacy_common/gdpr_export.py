"""A service's answer to `gdpr.export_requested.v1`: its part of the export, as pages of events.

No service calls another: the ambassador service publishes the request, each service
collects what it holds about the ambassador id and writes its part as
`gdpr.export_part_written.v1` events through its outbox (one document per export,
inserted once, so a redelivered request writes nothing again), and the ambassador
service assembles the pages. The parts carry personal data: they go only to the
export topic (`topics.GDPR_EXPORT`, one day's retention), and the document left
behind once the relay has published holds ids only.

A request older than `REQUEST_LIFETIME` is not answered: a replay of the ambassador
topic (a rebuilt read model) must not broadcast old exports again.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection

from .consuming import Delivery
from .events import GdprExportPartWritten, GdprExportRequested
from .outbox import OUTBOX_FIELD, notify_outbox, outbox_entries
from .repository import UnitOfWork, insert_once

RECORDS_PER_PAGE = 100  # small enough for any record size we export to stay far below Kafka's 1 MB
REQUEST_LIFETIME = timedelta(days=1)
COLLECTION = "gdpr_export_parts"
PART_EVENT_NAMESPACE = uuid.UUID("8a7c2e1d-3b4f-4e5a-9c6d-7f8e9a0b1c2d")
Sections = Mapping[str, Sequence[Mapping[str, Any]]]


def part_pages(request: GdprExportRequested, service: str, sections: Sections,
               now: datetime) -> list[GdprExportPartWritten]:
    """The part cut into pages of at most RECORDS_PER_PAGE records; always one page, even when empty."""
    records = [(kind, dict(record)) for kind, items in sections.items() for record in items]
    chunks = [records[start:start + RECORDS_PER_PAGE] for start in range(0, len(records), RECORDS_PER_PAGE)] or [[]]
    pages = []
    for number, chunk in enumerate(chunks, start=1):
        grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in sections}
        for kind, record in chunk:
            grouped[kind].append(record)
        pages.append(GdprExportPartWritten(export_id=request.export_id, ambassador_id=request.ambassador_id,
                                           service=service, page=number, last=number == len(chunks),
                                           sections=grouped, written_at=now))
    return pages


def is_current(request: GdprExportRequested, now: datetime) -> bool:
    return now - request.requested_at <= REQUEST_LIFETIME


class ExportParts(Protocol):
    async def write(self, delivery: Delivery, service: str, sections: Sections, now: datetime) -> bool:
        """Store this service's part of the requested export with its page events; False when written before."""


@dataclass(frozen=True)
class MongoExportParts:
    """One document per export in the service's own database, inserted once with its page events in
    `_outbox`; the relay publishes them and clears the outbox, leaving ids and a time behind."""

    collection: AsyncCollection
    source: str

    async def write(self, delivery: Delivery, service: str, sections: Sections, now: datetime) -> bool:
        request = delivery.event
        assert isinstance(request, GdprExportRequested)
        uow = UnitOfWork(delivery.tenant_id, self.source, causation=delivery.envelope)
        for page in part_pages(request, service, sections, now):
            # Deterministic ids: a part written again after a crash is the same events.
            uow.record(page, event_id=str(uuid.uuid5(
                PART_EVENT_NAMESPACE, f"{delivery.tenant_id}/{request.export_id}/{service}/{page.page}")))
        document_id = f"{delivery.tenant_id}\x1f{request.export_id}"
        document = {"_id": document_id, "tenant": delivery.tenant_id, "export_id": request.export_id,
                    "written_at": now, OUTBOX_FIELD: outbox_entries(uow.pending)}
        if not await insert_once(self.collection, document):
            return False
        await notify_outbox(self.collection, document_id)
        return True


async def answer_export_request(parts: ExportParts, delivery: Delivery, service: str,
                                collect: Callable[[str, str], Awaitable[Sections]], now: datetime) -> bool:
    """The handler every service runs on `gdpr.export_requested.v1`: collect what it holds about the
    ambassador id and write it as its part, unless the request is too old (a replay)."""
    request = delivery.event
    assert isinstance(request, GdprExportRequested)
    if not is_current(request, now):
        return False
    return await parts.write(delivery, service, await collect(delivery.tenant_id, request.ambassador_id), now)
