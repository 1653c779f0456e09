"""FastStream subscriptions of the metrics worker: every topic, in batches, into one generation."""

from __future__ import annotations

import functools

from advocacy_common.topics import EVENT_TOPICS
from advocacy_common.worker import ServiceWorker

from .handlers import FoldSchedule, handlers_for, project_batch
from .models import FIRST_GENERATION
from .ports import MetricsStore


def consumer_group(base_group: str, generation: int) -> str:
    """Each generation has its own group: a rebuilt generation's offsets belong to it alone."""
    return base_group if generation == FIRST_GENERATION else f"{base_group}-g{generation}"


def subscribe_generation(worker: ServiceWorker, base_group: str, generation: int, store: MetricsStore,
                         max_records: int, fold_every_seconds: float) -> None:
    """Consume every topic in batches into one generation's storage, folding slices now and then."""
    worker.consume(EVENT_TOPICS, consumer_group(base_group, generation), handlers_for(store),
                   batch_handler=functools.partial(project_batch, store, schedule=FoldSchedule(fold_every_seconds)),
                   max_records=max_records)
