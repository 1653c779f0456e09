"""`python -m metrics.rebuild`: replay every topic from the start into a fresh generation, then switch.

The new generation has its own consumer group. Once it has caught up with the
end of every partition (offsets committed), the live-generation pointer moves;
readers follow on their next request and workers re-subscribe under the new
group, continuing from the offsets the rebuild committed. The old generation's
collections stay untouched, so a switch back is one pointer write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from aiokafka import AIOKafkaConsumer

from advocacy_common.consuming import Dispatcher, RawRecord
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher
from advocacy_common.topics import EVENT_TOPICS, ensure_topics

from .bootstrap import load_settings, open_generations
from .consumers import consumer_group
from .handlers import FoldSchedule, fold_slices, handlers_for, project_batch
from .ports import MetricsStore
from .service import rebuild_generation
from .settings import MetricsSettings

log = logging.getLogger(__name__)


async def _caught_up(consumer: AIOKafkaConsumer) -> bool:
    assigned = list(consumer.assignment())
    if not assigned:
        return False
    ends = await consumer.end_offsets(assigned)
    for partition in assigned:
        if await consumer.position(partition) < ends[partition]:
            return False
    return True


async def replay(consumer: AIOKafkaConsumer, dispatcher: Dispatcher, store: MetricsStore,
                 fold_every_seconds: float = 2.0) -> int:
    """Apply batches and commit them until every assigned partition is read to its end, then fold what is left."""
    applied = 0
    handler = functools.partial(project_batch, store, schedule=FoldSchedule(fold_every_seconds))
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        records = [RawRecord.from_consumer_record(r) for partition in batches.values() for r in partition]
        if records:
            await dispatcher.dispatch_batch(records, handler)
            await consumer.commit()
            applied += len(records)
        elif await _caught_up(consumer):
            await fold_slices(store, None)  # the rebuild is the generation's only writer yet
            return applied


async def rebuild(settings: MetricsSettings) -> int:
    """Build a new generation from the topics, switch to it, and return its number."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-rebuild")
    names = settings.topics
    await ensure_topics(settings.kafka_bootstrap_servers, names, settings.topic_partitions)
    publisher = EventPublisher(settings.kafka_bootstrap_servers, names, client_id=f"{settings.service_name}-rebuild")

    async def replay_into(generation: int, store: MetricsStore) -> int:
        consumer = AIOKafkaConsumer(*(names.physical(t) for t in EVENT_TOPICS),
                                    bootstrap_servers=settings.kafka_bootstrap_servers,
                                    group_id=consumer_group(settings.consumer_group, generation),
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_poll_records=settings.batch_max_records)
        await consumer.start()
        try:
            dispatcher = Dispatcher(names, publisher, handlers_for(store),
                                    group_id=consumer_group(settings.consumer_group, generation),
                                    max_value_bytes=settings.max_event_bytes)
            return await replay(consumer, dispatcher, store, settings.fold_every_seconds)
        finally:
            await consumer.stop()

    started = time.perf_counter()
    await publisher.start()
    try:
        generation, applied = await rebuild_generation(await open_generations(client[settings.database], settings),
                                                       replay_into)
    finally:
        await publisher.stop()
        await client.close()
    log.info("generation %d rebuilt from %d records in %.1fs and now live", generation, applied,
             time.perf_counter() - started)
    return generation


def main() -> None:
    generation = asyncio.run(rebuild(load_settings()))
    print(f"metrics generation {generation} is live")


if __name__ == "__main__":
    main()
