import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from advocacy_common import topics
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.outbox import (
    COMPRESSED_OUTBOX_FIELD, HINTS_COLLECTION, OUTBOX_FIELD, OutboxRelay, compressed_outbox, notify_outbox,
    outbox_entries, packed_outbox_entries,
)
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_testkit import document_with_pending, read_envelopes

pytestmark = pytest.mark.integration
CHILD = Path(__file__).with_name("relay_child.py")


def opted_out(ambassador_id: str):
    event = AmbassadorOptedOut(ambassador_id=ambassador_id, opted_out_at=datetime.now(UTC))
    return topics.AMBASSADOR, envelope_for(event, tenant_id="acme", source="/tests")


async def test_state_change_and_event_are_one_write_then_relayed(database, infrastructure, kafka_topics):
    things = database["things"]
    first = opted_out("amb-outbox-1")
    await things.insert_one(document_with_pending({"_id": "a1", "tenant": "acme", "state": "in"}, [first]))
    second = opted_out("amb-outbox-1")
    await things.update_one({"_id": "a1"}, {"$set": {"state": "out"}, "$push": {OUTBOX_FIELD: {"$each": outbox_entries([second])}}})
    assert len((await things.find_one({"_id": "a1"}))[OUTBOX_FIELD]) == 2

    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        assert await OutboxRelay([things], publisher).run_once() == 2
        assert await OutboxRelay([things], publisher).run_once() == 0
    finally:
        await publisher.stop()
    document = await things.find_one({"_id": "a1"})
    assert document[OUTBOX_FIELD] == [] and document["state"] == "out"
    ids = {first[1].id, second[1].id}
    found = await read_envelopes(infrastructure.kafka_bootstrap_servers, kafka_topics.physical(topics.AMBASSADOR),
                                 min_count=2, predicate=lambda e: e.id in ids)
    assert [e.id for e in found] == [first[1].id, second[1].id]  # order kept for one aggregate


async def test_relay_killed_between_publish_and_clear_republishes(database, infrastructure, kafka_topics):
    things = database["things"]
    pending = opted_out("amb-crash-1")
    await things.insert_one(document_with_pending({"_id": "c1", "tenant": "acme"}, [pending]))
    args = [sys.executable, str(CHILD), infrastructure.kafka_bootstrap_servers, infrastructure.mongodb_uri,
            database.name, kafka_topics.prefix]

    crashed = await asyncio.to_thread(subprocess.run, [*args, "1"], capture_output=True, timeout=60)
    assert crashed.returncode == -9  # SIGKILL after the ack, before the clear
    assert len((await things.find_one({"_id": "c1"}))[OUTBOX_FIELD]) == 1  # still pending: not lost

    restarted = await asyncio.to_thread(subprocess.run, [*args, "0"], capture_output=True, timeout=60, text=True)
    assert restarted.returncode == 0, restarted.stderr
    assert "published 1" in restarted.stdout
    assert (await things.find_one({"_id": "c1"}))[OUTBOX_FIELD] == []

    copies = await read_envelopes(infrastructure.kafka_bootstrap_servers, kafka_topics.physical(topics.AMBASSADOR),
                                  min_count=2, predicate=lambda e: e.id == pending[1].id)
    # Published twice, with the same CloudEvents id: consumers de-duplicate it.
    assert len(copies) == 2 and {e.data["ambassador_id"] for e in copies} == {"amb-crash-1"}


async def test_flush_publishes_one_document_now(database, infrastructure, kafka_topics):
    things = database["things"]
    pending = opted_out("amb-flush-1")
    await things.insert_one(document_with_pending({"_id": "f1", "tenant": "acme"}, [pending]))
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        assert await OutboxRelay([things], publisher).flush(things, "f1") == 1
    finally:
        await publisher.stop()
    found = await read_envelopes(infrastructure.kafka_bootstrap_servers, kafka_topics.physical(topics.AMBASSADOR),
                                 predicate=lambda e: e.id == pending[1].id)
    assert len(found) == 1


async def test_hinted_documents_are_relayed_without_a_sweep(database, infrastructure, kafka_topics):
    things = database["things"]
    hinted, unhinted = opted_out("amb-hint-1"), opted_out("amb-hint-2")
    await things.insert_one(document_with_pending({"_id": "h1", "tenant": "acme"}, [hinted]))
    await notify_outbox(things, "h1")
    await things.insert_one(document_with_pending({"_id": "h2", "tenant": "acme"}, [unhinted]))
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        relay = OutboxRelay([things], publisher)
        assert await relay.run_hinted() == 1  # only the hinted one, without scanning
        assert await database[HINTS_COLLECTION].count_documents({}) == 0
        assert len((await things.find_one({"_id": "h2"}))[OUTBOX_FIELD]) == 1
        assert await relay.run_once() == 1  # the sweep catches the writer that left no hint
    finally:
        await publisher.stop()
    found = await read_envelopes(infrastructure.kafka_bootstrap_servers, kafka_topics.physical(topics.AMBASSADOR),
                                 min_count=2, predicate=lambda e: e.id in {hinted[1].id, unhinted[1].id})
    assert len(found) == 2


async def test_sweep_drains_more_than_one_batch(database, infrastructure, kafka_topics):
    things = database["many"]
    await things.insert_many([document_with_pending({"_id": f"m{i}"}, [opted_out(f"amb-many-{i}")])
                              for i in range(7)])
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        assert await OutboxRelay([things], publisher, batch_size=3).run_once() == 7
    finally:
        await publisher.stop()


async def test_hinted_documents_are_relayed_in_batches(database, infrastructure, kafka_topics):
    things = database["batched"]
    pending = {f"b{i}": [opted_out(f"amb-batch-{i}"), opted_out(f"amb-batch-{i}")] for i in range(5)}
    for document_id, events in pending.items():
        await things.insert_one(document_with_pending({"_id": document_id, "tenant": "acme"}, events))
        await notify_outbox(things, document_id)
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        relay = OutboxRelay([things], publisher, batch_size=3)
        assert await relay.run_hinted() == 6  # three documents of two events in one pass
        assert await relay.run_hinted() == 4
        assert await relay.run_hinted() == 0
    finally:
        await publisher.stop()
    assert await things.count_documents({f"{OUTBOX_FIELD}.0": {"$exists": True}}) == 0
    ids = {envelope.id for events in pending.values() for _, envelope in events}
    found = await read_envelopes(infrastructure.kafka_bootstrap_servers, kafka_topics.physical(topics.AMBASSADOR),
                                 min_count=10, predicate=lambda e: e.id in ids)
    ordered = [e.id for e in found]
    for _, events in pending.items():  # one document's events keep their order
        assert ordered.index(events[0][1].id) < ordered.index(events[1][1].id)


async def test_queue_documents_are_published_then_deleted(database, infrastructure, kafka_topics):
    queue, kept = database["queue"], database["kept"]
    await queue.insert_many([document_with_pending({"_id": f"q{i}", "tenant": "acme"}, [opted_out(f"amb-q-{i}")])
                             for i in range(4)])
    # A queue document of several events packed as JSON strings (distribution's batches of clicks), beside the
    # documents of earlier releases: the relay reads both.
    packed = packed_outbox_entries([opted_out("amb-q-4"), opted_out("amb-q-5")])
    await queue.insert_one({"_id": "q4", "tenant": "acme", OUTBOX_FIELD: packed})
    # And one of compressed events (today's batches of clicks): stored and read back as binary on either server.
    compressed = [opted_out("amb-q-6"), opted_out("amb-q-7")]
    await queue.insert_one({"_id": "q5", "tenant": "acme", COMPRESSED_OUTBOX_FIELD: compressed_outbox(compressed)})
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        relay = OutboxRelay([kept], publisher, batch_size=2, queues=[queue])
        assert await relay.run_queues() == 2  # no hint needed: every queued document is pending
        assert await queue.count_documents({}) == 4
        assert await relay.run_once() == 6  # the sweep drains the queues too (four documents, six events)
        assert await queue.count_documents({}) == 0
    finally:
        await publisher.stop()
    found = await read_envelopes(infrastructure.kafka_bootstrap_servers, kafka_topics.physical(topics.AMBASSADOR),
                                 min_count=8, predicate=lambda e: str(e.data.get("ambassador_id", "")).startswith("amb-q-"))
    assert {e.data["ambassador_id"] for e in found} == {f"amb-q-{i}" for i in range(8)}
    assert {e.id for e in found} >= {entry["id"] for entry in packed} | {envelope.id for _, envelope in compressed}


async def test_a_sliced_sweep_visits_every_collection_in_turn_after_the_first_full_one(database, infrastructure,
                                                                                       kafka_topics):
    buckets = [database[f"things_{n}"] for n in range(5)]
    events = {n: opted_out(f"amb-slice-{n}") for n in range(5)}
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        relay = OutboxRelay(buckets, publisher, poll_interval=0.01, sweep_interval=0.05, sweep_slice=2)
        assert [c.name for c in relay._sweep_turn(2)] == ["things_0", "things_1"]
        assert [c.name for c in relay._sweep_turn(2)] == ["things_2", "things_3"]
        assert [c.name for c in relay._sweep_turn(2)] == ["things_4", "things_0"]  # round and round
        stop = asyncio.Event()
        running = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(0.3)  # past the start-up sweep of them all: from now on one at a time, two per interval
        for n, bucket in enumerate(buckets):  # written without hints: only a sweep finds them
            await bucket.insert_one(document_with_pending({"_id": f"s{n}", "tenant": "acme"}, [events[n]]))
        deadline = asyncio.get_running_loop().time() + 20
        while any([await bucket.find_one({f"{OUTBOX_FIELD}.0": {"$exists": True}}) for bucket in buckets]):
            assert asyncio.get_running_loop().time() < deadline, "a sliced sweep left a bucket's events pending"
            await asyncio.sleep(0.05)
        stop.set()
        await running
    finally:
        await publisher.stop()
    found = await read_envelopes(infrastructure.kafka_bootstrap_servers, kafka_topics.physical(topics.AMBASSADOR),
                                 min_count=5, predicate=lambda e: e.id in {event.id for _, event in events.values()})
    assert len(found) == 5


async def test_batched_publication_keeps_each_keys_order_partition_and_trace(infrastructure, kafka_topics):
    """What the relay's queues use (`publish_batched`): one record batch per partition, no send per event; each
    record lands where `send` puts its key, in the given order, with its envelope's own `traceparent`."""
    from aiokafka import AIOKafkaConsumer

    physical = kafka_topics.physical(topics.AMBASSADOR)
    traceparents = [f"00-{n:032x}-{n:016x}-01" for n in range(1, 7)]
    prefix = f"amb-pb-{uuid.uuid4().hex[:8]}-"
    events = [opted_out(f"{prefix}{n % 3}") for n in range(300)]  # three keys, 100 events each: several batches
    events = [(topic, envelope.model_copy(update={"traceparent": traceparents[n % 6]}))
              for n, (topic, envelope) in enumerate(events)]
    probe = opted_out(f"{prefix}0")
    publisher = EventPublisher(infrastructure.kafka_bootstrap_servers, kafka_topics)
    await publisher.start()
    try:
        await publisher.publish(*probe)  # through `send`: where that key goes
        await publisher.publish_batched(events)
        await publisher.publish_batched([])
    finally:
        await publisher.stop()
    consumer = AIOKafkaConsumer(physical, bootstrap_servers=infrastructure.kafka_bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(records) < 301 and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records += [r for r in batch if r.key and r.key.decode().startswith(prefix)]
    finally:
        await consumer.stop()
    assert len(records) == 301
    ids = {envelope.id: n for n, (_, envelope) in enumerate(events)}
    by_key: dict[bytes, list] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    for key, of_key in by_key.items():
        assert len({r.partition for r in of_key}) == 1  # one key, one partition: send's and the batches' alike
        batched = [r for r in of_key if dict(r.headers)["ce_id"].decode() in ids]
        positions = [ids[dict(r.headers)["ce_id"].decode()] for r in batched]
        assert positions == sorted(positions) and len(positions) == 100  # in the order given
        for record in batched:
            headers = dict(record.headers)
            sent = events[ids[headers["ce_id"].decode()]][1]
            assert headers["traceparent"].decode() == sent.traceparent  # the envelope's trace, no send span's
            assert [name for name, _ in record.headers].count("traceparent") == 1
