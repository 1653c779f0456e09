"""The worker's subscriptions: which topics feed which handlers, in which consumer group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from advocacy_common.consuming import Delivery, ProcessedEvents, one_at_a_time
from advocacy_common.topics import AMBASSADOR, CONTENT, ENGAGEMENT
from advocacy_common.worker import ServiceWorker

from .connectors.handlers import connection_handlers
from .connectors.ports import ConnectorStores
from .handlers import ENGAGEMENT_HANDLERS, PROJECTION_HANDLERS, Handler, bind, is_comment_on_share
from .ports import Repositories


def subscribe(worker: ServiceWorker, repositories: Callable[[], Awaitable[Repositories]], consumer_group: str,
              ledger: ProcessedEvents, connector_stores: Callable[[], Awaitable[ConnectorStores]]) -> None:
    """Projections of content and ambassador events in `consumer_group`; comment tallies from engagement
    in a group of their own (a slow projection replay never delays them, nor the other way round).
    The ledger skips events a producer's relay re-published after a crash (same id, new offset)."""
    projections = bind(PROJECTION_HANDLERS, repositories)
    # An opt-out or an erasure also deletes the person's network tokens and tracked posts, in the same
    # handling (both effects are idempotent; no consumer group more to join at every start).
    for event_type, forget in connection_handlers(connector_stores).items():
        projections[event_type] = then(projections[event_type], forget)
    worker.consume([CONTENT, AMBASSADOR], consumer_group, projections, ledger=ledger)
    comments = bind(ENGAGEMENT_HANDLERS, repositories)
    # In batches: the engagement topic carries every report and click, and one record at a time (a ledger
    # lookup, an insert and an offset commit each) fell minutes behind it under load.
    worker.consume([ENGAGEMENT], f"{consumer_group}-comments", comments, batch_handler=one_at_a_time(comments),
                   max_records=500, ledger=ledger, relevant=is_comment_on_share)


def then(first: Handler, second: Handler) -> Handler:
    async def both(delivery: Delivery) -> None:
        await first(delivery)
        await second(delivery)
    return both
