"""The worker's subscriptions: which topics feed which handlers, in which consumer group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from advocacy_common.consuming import ProcessedEvents
from advocacy_common.topics import AMBASSADOR, CONTENT, ENGAGEMENT
from advocacy_common.worker import ServiceWorker

from .connectors.handlers import connection_handlers
from .connectors.ports import ConnectorStores
from .handlers import ENGAGEMENT_HANDLERS, PROJECTION_HANDLERS, bind
from .ports import Repositories


def subscribe(worker: ServiceWorker, repositories: Callable[[], Awaitable[Repositories]], consumer_group: str,
              ledger: ProcessedEvents, connector_stores: Callable[[], Awaitable[ConnectorStores]]) -> None:
    """Projections of content and ambassador events in `consumer_group`; comment tallies from engagement
    in a group of their own (a slow projection replay never delays them, nor the other way round).
    The ledger skips events a producer's relay re-published after a crash (same id, new offset)."""
    worker.consume([CONTENT, AMBASSADOR], consumer_group, bind(PROJECTION_HANDLERS, repositories), ledger=ledger)
    worker.consume([ENGAGEMENT], f"{consumer_group}-comments", bind(ENGAGEMENT_HANDLERS, repositories),
                   ledger=ledger)
    # Opt-outs and erasures delete the person's network tokens, in a group of their own. No ledger: the
    # ledger is keyed by event id and the projections' group records these same events; deleting is
    # idempotent anyway.
    worker.consume([AMBASSADOR], f"{consumer_group}-connections", connection_handlers(connector_stores))
