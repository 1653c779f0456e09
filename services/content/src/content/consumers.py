"""The worker's subscriptions: ambassador events to the handlers, applied once each."""

from __future__ import annotations

from advocacy_common.topics import AMBASSADOR
from advocacy_common.worker import ServiceWorker

from .handlers import build_handlers
from .service import ContentService
from .store import ContentStore


def subscribe(worker: ServiceWorker, group_id: str, store: ContentStore, service: ContentService) -> None:
    # The ledger (our own database) skips copies of an event that its producer's relay re-published.
    worker.consume([AMBASSADOR], group_id, build_handlers(store.ambassadors, service, store.export_parts),
                   ledger=store.ledger)
