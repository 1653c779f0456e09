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
from advocacy_common.logs import configure_logging
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher
from advocacy_common.topics import EVENT_TOPICS, ensure_topics

from .bootstrap import consumer_group
from .handlers import handlers_for, project_batch
from .settings import MetricsSettings
from .store import Generations, MongoMetricsStore

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


async def replay(consumer: AIOKafkaConsumer, dispatcher: Dispatcher, store: MongoMetricsStore) -> int:
    """Apply batches and commit them until every assigned partition is read to its end."""
    applied = 0
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        records = [RawRecord.from_consumer_record(r) for partition in batches.values() for r in partition]
        if records:
            await dispatcher.dispatch_batch(records, functools.partial(project_batch, store))
            await consumer.commit()
            applied += len(records)
        elif await _caught_up(consumer):
            return applied


async def rebuild(settings: MetricsSettings) -> int:
    """Build a new generation from the topics, switch to it, and return its number."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-rebuild")
    generations = Generations(client[settings.database])
    await generations.detect_server()
    generation = await generations.allocate()
    store = generations.store(generation)
    await store.drop()
    await store.ensure_indexes()
    names = settings.topics
    await ensure_topics(settings.kafka_bootstrap_servers, names, settings.topic_partitions)
    publisher = EventPublisher(settings.kafka_bootstrap_servers, names, client_id=f"{settings.service_name}-rebuild")
    consumer = AIOKafkaConsumer(*(names.physical(t) for t in EVENT_TOPICS),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                group_id=consumer_group(settings, generation), enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=settings.batch_max_records)
    await publisher.start()
    await consumer.start()
    started = time.perf_counter()
    try:
        dispatcher = Dispatcher(names, publisher, handlers_for(store), group_id=consumer_group(settings, generation),
                                max_value_bytes=settings.max_event_bytes)
        applied = await replay(consumer, dispatcher=dispatcher, store=store)
        await generations.switch_to(generation)
    finally:
        await consumer.stop()
        await publisher.stop()
        await client.close()
    log.info("generation %d rebuilt from %d records in %.1fs and now live", generation, applied,
             time.perf_counter() - started)
    return generation


def main() -> None:
    settings = MetricsSettings()
    configure_logging(settings.log_level, settings.log_json)
    generation = asyncio.run(rebuild(settings))
    print(f"metrics generation {generation} is live")


if __name__ == "__main__":
    main()
