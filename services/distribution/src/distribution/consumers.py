"""The worker's subscriptions: which topics feed which handlers, in which consumer group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from advocacy_common.consuming import ProcessedEvents, one_at_a_time
from advocacy_common.topics import AMBASSADOR, CONTENT, ENGAGEMENT
from advocacy_common.worker import ServiceWorker

from .handlers import ENGAGEMENT_HANDLERS, PROJECTION_HANDLERS, bind
from .ports import Repositories


def subscribe(worker: ServiceWorker, repositories: Callable[[], Awaitable[Repositories]], consumer_group: str,
              ledger: ProcessedEvents) -> None:
    """Projections of content and ambassador events in `consumer_group`; comment tallies from engagement
    in a group of their own (a slow projection replay never delays them, nor the other way round).
    The ledger skips events a producer's relay re-published after a crash (same id, new offset)."""
    worker.consume([CONTENT, AMBASSADOR], consumer_group, bind(PROJECTION_HANDLERS, repositories), ledger=ledger)
    comments = bind(ENGAGEMENT_HANDLERS, repositories)
    # In batches: the engagement topic carries every report and click, and one record at a time (a ledger
    # lookup, an insert and an offset commit each) fell minutes behind it under load.
    worker.consume([ENGAGEMENT], f"{consumer_group}-comments", comments, batch_handler=one_at_a_time(comments),
                   max_records=500, ledger=ledger)
