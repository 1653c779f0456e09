from datetime import UTC, datetime

import pytest

from advocacy_common import topics
from advocacy_common.consuming import Delivery, ProcessedEvents
from advocacy_common.repository import apply_once
from advocacy_common.envelope import KafkaRecord
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_testkit import read_envelopes
from advocacy_common.worker import ServiceWorker

pytestmark = pytest.mark.integration


async def test_consumer_applies_dead_letters_poison_and_keeps_flowing(database, infrastructure, kafka_topics, run_id,
                                                                     wait_until, worker_settings):
    applied = database["applied"]

    async def on_opted_out(delivery: Delivery) -> None:
        if delivery.event.ambassador_id.startswith("poison"):
            raise ValueError("this event can never be applied")
        await apply_once(applied, {"_id": delivery.event.ambassador_id}, {"$inc": {"times": 1}}, delivery)

    group = f"common-worker-{run_id}"
    worker = ServiceWorker(worker_settings(), "common-test")
    worker.consume([topics.AMBASSADOR], group, {AmbassadorOptedOut: on_opted_out}, max_attempts=2,
                   ledger=ProcessedEvents(database["processed_events"]))
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    await worker.start()
    try:
        # The same aggregate key puts all of them on one partition: the poison one sits in the middle.
        def env(ambassador_id):
            event = AmbassadorOptedOut(ambassador_id=ambassador_id, opted_out_at=datetime.now(UTC))
            return envelope_for(event, tenant_id="acme", source="/t").model_copy(update={"subject": "same-key"})

        good1, poison, good2 = env(f"ok-1-{run_id}"), env(f"poison-{run_id}"), env(f"ok-2-{run_id}")
        # good1 is published twice (as an outbox relay does after a crash): applied once.
        for envelope in (good1, poison, good2, good1):
            await publisher.publish(topics.AMBASSADOR, envelope)
        await publisher.send_record(kafka_topics.physical(topics.AMBASSADOR),
                                    KafkaRecord(key=b"same-key", value=b"not a cloudevent", headers=[]))
        good3 = env(f"ok-3-{run_id}")
        await publisher.publish(topics.AMBASSADOR, good3)

        assert await wait_until(lambda: _exists(applied, good3.data["ambassador_id"]))
        assert (await applied.find_one({"_id": good1.data["ambassador_id"]}))["times"] == 1
        assert (await applied.find_one({"_id": good2.data["ambassador_id"]}))["times"] == 1
        dead = await read_envelopes(infrastructure.kafka_bootstrap_servers,
                                    kafka_topics.dlq(topics.AMBASSADOR), min_count=1,
                                    predicate=lambda e: e.id == poison.id)
        assert len(dead) == 1
    finally:
        await worker.stop()
        await publisher.stop()

    # Offsets were committed after the effects: a new worker in the same group starts after them.
    calls = []

    async def count_calls(delivery: Delivery) -> None:
        calls.append(delivery.event.ambassador_id)

    second = ServiceWorker(worker_settings(), "common-test-2")
    second.consume([topics.AMBASSADOR], group, {AmbassadorOptedOut: count_calls})
    await second.start()
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        last = envelope_for(AmbassadorOptedOut(ambassador_id=f"ok-4-{run_id}", opted_out_at=datetime.now(UTC)),
                            tenant_id="acme", source="/t")
        await publisher.publish(topics.AMBASSADOR, last)

        async def saw_last():
            return f"ok-4-{run_id}" in calls

        assert await wait_until(saw_last)
        assert not any(c.startswith(("ok-1", "ok-2", "ok-3")) and c.endswith(run_id) for c in calls)
    finally:
        await publisher.stop()
        await second.stop()


async def _exists(collection, _id) -> bool:
    return await collection.find_one({"_id": _id}) is not None
