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


async def test_a_rebalance_takes_the_partitions_only_after_the_batch_in_hand_is_committed(
        infrastructure, kafka_topics, run_id, wait_until, worker_settings):
    """A second worker joins while the first has a batch in hand: the batch's offsets are committed before the
    partitions move, so none of its records is delivered again (to either worker)."""
    seen: dict[str, list[str]] = {"first": [], "second": []}
    first_batch: list[str] = []

    def recorder(name: str, holder: list[ServiceWorker]):
        async def batch(deliveries) -> None:
            ours = [d.event.ambassador_id for d in deliveries
                    if d.event.ambassador_id.startswith("handover-") and d.event.ambassador_id.endswith(run_id)]
            if name == "first" and not first_batch and ours:
                first_batch.extend(ours)
                # Hold the batch until the rebalance asks for the partitions back, and then some more: were
                # the partitions handed over now, the second worker would get them (the wait ends early).
                assert await wait_until(_is_set(holder[0].subscriptions[0].handover.revoking), timeout=60)
                await wait_until(_assigned(workers[1]), timeout=5)
            seen[name].extend(ours)

        return batch

    group = f"common-handover-{run_id}"
    workers: list[ServiceWorker] = []
    for name in ("first", "second"):
        worker = ServiceWorker(worker_settings(), f"common-handover-{name}")
        worker.consume([topics.AMBASSADOR], group, {AmbassadorOptedOut: _ignore},
                       batch_handler=recorder(name, [worker]), max_records=1000)
        workers.append(worker)
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    sent = [f"handover-{n}-{run_id}" for n in range(30)]
    later = [f"handover-later-{n}-{run_id}" for n in range(30)]

    async def publish(ambassador_ids):
        for ambassador_id in ambassador_ids:  # keyed by the ambassador: spread over the 3 partitions
            await publisher.publish(topics.AMBASSADOR, envelope_for(
                AmbassadorOptedOut(ambassador_id=ambassador_id, opted_out_at=datetime.now(UTC)),
                tenant_id="acme", source="/t"))

    try:
        await publish(sent)
        await workers[0].start()

        async def first_batch_in_hand():
            return bool(first_batch)

        assert await wait_until(first_batch_in_hand)
        await workers[1].start()

        # Published after the held batch: on each partition, a redelivery of that batch would come before them.
        await publish(later)

        async def all_seen():
            return set(seen["first"]) | set(seen["second"]) == set(sent + later)

        assert await wait_until(all_seen, timeout=60), (first_batch, seen)
        delivered = seen["first"] + seen["second"]
        assert sorted(delivered) == sorted(sent + later)  # each once: the held batch was not handed over uncommitted
        assert not set(first_batch) & set(seen["second"])
    finally:
        await publisher.stop()
        for worker in workers:
            await worker.stop()


async def _ignore(delivery: Delivery) -> None:
    return None


def _assigned(worker: ServiceWorker):
    async def check() -> bool:
        consumer = next(iter(worker.broker.subscribers)).consumer
        return consumer is not None and bool(consumer.assignment())

    return check


def _is_set(event):
    async def check() -> bool:
        return event.is_set()

    return check
