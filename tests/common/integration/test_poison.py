"""Poison records on the real broker: each one ends in the DLQ once per group, and the partition flows on.

One worker with two groups reads the ambassador topic: one consumes record by record,
the other in batches (as metrics does). Every test sends a poison record, then a valid
event with the same key (so the same partition), waits until both groups applied the
valid one, and only then reads the DLQ: by then every dead letter of the poison record
is written, so "exactly one per group" is a fair assertion.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from pymongo.errors import AutoReconnect

from advocacy_common import dlq, topics
from advocacy_common.consuming import Delivery, ProcessedEvents
from advocacy_common.repository import apply_once
from advocacy_common.envelope import to_kafka
from advocacy_common.events import AmbassadorOptedOut
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_common.worker import ServiceWorker

pytestmark = pytest.mark.integration
MAX_EVENT_BYTES = 64 * 1024
LATENCIES_MS: dict[str, int] = {}


def valid_record(key: str, ambassador_id: str, event_id: str | None = None):
    event = AmbassadorOptedOut(ambassador_id=ambassador_id, opted_out_at=datetime.now(UTC))
    envelope = envelope_for(event, tenant_id="acme", source="/poison-tests", event_id=event_id)
    return to_kafka(envelope.model_copy(update={"subject": key}))


def ce_headers(event_type: str = "ambassador.opted_out.v1") -> list[tuple[str, bytes]]:
    return [("ce_id", uuid.uuid4().hex.encode()), ("ce_source", b"/poison-tests"), ("ce_type", event_type.encode()),
            ("ce_specversion", b"1.0"), ("ce_tenantid", b"acme"), ("content-type", b"application/json")]


class Effects:
    """What the handlers do: count each ambassador id once, unless told to fail."""

    def __init__(self):
        self.broken: set[str] = set()  # ids whose handler always fails (until "fixed")
        self.flaky: dict[tuple[str, str], int] = {}  # (group, id) -> transient failures left

    async def apply(self, group: str, collection, delivery: Delivery) -> None:
        ambassador_id = delivery.event.ambassador_id
        if ambassador_id in self.broken:
            raise ValueError(f"cannot apply {ambassador_id}")
        if self.flaky.get((group, ambassador_id), 0) > 0:
            self.flaky[(group, ambassador_id)] -= 1
            raise AutoReconnect("database unreachable")
        await apply_once(collection, {"_id": ambassador_id}, {"$inc": {"times": 1}}, delivery)


@dataclass
class Bed:
    bootstrap: str
    names: object
    producer: AIOKafkaProducer
    applied: dict[str, object]  # group -> collection
    effects: Effects
    run_id: str
    wait_until: object

    async def send(self, key: str, value: bytes | None, headers: list[tuple[str, bytes]]):
        return await self.producer.send_and_wait(self.names.physical(topics.AMBASSADOR), key=key.encode(),
                                                 value=value, headers=headers)

    async def send_valid(self, key: str, ambassador_id: str):
        record = valid_record(key, ambassador_id)
        return await self.send(key, record.value, record.headers)

    async def times_applied(self, ambassador_id: str) -> dict[str, int | None]:
        found = {g: await c.find_one({"_id": ambassador_id}) for g, c in self.applied.items()}
        return {g: (d or {}).get("times") for g, d in found.items()}

    async def dead_letters_of(self, meta) -> list[dlq.DeadLetter]:
        """This bed's groups' dead letters of one record (other tests' consumers of the session's topics,
        e.g. a service worker still running, dead-letter the same poison under their own groups)."""
        letters = await dlq.read_dead_letters(self.bootstrap, self.names.dlq(topics.AMBASSADOR))
        return [x for x in letters if (x.header(dlq.ORIGINAL_TOPIC), x.header(dlq.ORIGINAL_PARTITION),
                                       x.header(dlq.ORIGINAL_OFFSET)) == (meta.topic, str(meta.partition),
                                                                         str(meta.offset))
                and x.header(dlq.GROUP) in self.applied]

    async def poison_then_valid(self, kind: str, value: bytes | None, headers: list[tuple[str, bytes]]):
        """Send the poison record and a valid event after it on its partition; wait for the valid one."""
        key = f"{kind}-{self.run_id}"
        poison = await self.send(key, value, headers)
        follower_id = f"after-{kind}-{self.run_id}"
        follower = await self.send_valid(key, follower_id)
        assert follower.partition == poison.partition and follower.offset > poison.offset
        assert await self.wait_until(lambda: _all_once(self, follower_id)), f"{kind}: the partition is stuck"
        return poison

    async def assert_dead_lettered(self, kind: str, poison, *, reason: str, error_type: str,
                                   attempts: str = "0") -> list[dlq.DeadLetter]:
        letters = await self.dead_letters_of(poison)
        assert sorted(x.header(dlq.GROUP) for x in letters) == sorted(self.applied), \
            f"{kind}: expected one dead letter per group"
        for letter in letters:
            assert reason in letter.header(dlq.REASON), letter.header(dlq.REASON)
            assert letter.header(dlq.ERROR_TYPE) == error_type
            assert letter.header(dlq.ATTEMPTS) == attempts
            assert letter.partition == dlq.DLQ_PARTITION
        LATENCIES_MS[kind] = max(x.timestamp for x in letters) - poison.timestamp
        print(f"poison -> DLQ ({kind}, both groups): {LATENCIES_MS[kind]} ms")
        return letters


async def _all_once(bed: Bed, ambassador_id: str) -> bool:
    return set((await bed.times_applied(ambassador_id)).values()) == {1}


@pytest.fixture(scope="module")
async def bed(infrastructure, kafka_topics, run_id, wait_until, worker_settings):
    client = create_client(infrastructure.mongodb_uri, "common-poison-tests")
    database = client[f"common_poison_{run_id}"]
    effects = Effects()
    groups = {"single": f"poison-single-{run_id}", "batch": f"poison-batch-{run_id}"}
    applied = {group: database[f"applied_{name}"] for name, group in groups.items()}
    worker = ServiceWorker(worker_settings(max_event_bytes=MAX_EVENT_BYTES), "poison-test")
    single, batch = groups["single"], groups["batch"]

    async def one(delivery: Delivery) -> None:
        await effects.apply(single, applied[single], delivery)

    async def many(deliveries) -> None:
        for delivery in deliveries:
            await effects.apply(batch, applied[batch], delivery)

    worker.consume([topics.AMBASSADOR], single, {AmbassadorOptedOut: one},
                   ledger=ProcessedEvents(database["processed_single"]))
    worker.consume([topics.AMBASSADOR], batch, {AmbassadorOptedOut: one}, batch_handler=many,
                   ledger=ProcessedEvents(database["processed_batch"]))
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap_servers, acks="all")
    await producer.start()
    await worker.start()
    try:
        yield Bed(infrastructure.kafka_bootstrap_servers, kafka_topics, producer, applied, effects, run_id,
                  wait_until)
    finally:
        await worker.stop()
        await producer.stop()
        await client.drop_database(database.name)
        await client.close()
        print(f"poison -> DLQ latencies (ms): {LATENCIES_MS}")


async def test_value_that_is_not_json(bed):
    poison = await bed.poison_then_valid("not-json", b"{not json", ce_headers())
    await bed.assert_dead_lettered("not-json", poison, reason="value is not JSON", error_type="MalformedEnvelope")


async def test_empty_value(bed):
    poison = await bed.poison_then_valid("empty", b"", ce_headers())
    await bed.assert_dead_lettered("empty", poison, reason="empty value", error_type="UnacceptableRecord")


async def test_null_value_tombstone(bed):
    poison = await bed.poison_then_valid("tombstone", None, ce_headers())
    letters = await bed.assert_dead_lettered("tombstone", poison, reason="tombstone",
                                             error_type="UnacceptableRecord")
    assert all(x.value is None for x in letters)  # still a tombstone, so a replay would be faithful


async def test_header_that_is_not_utf8(bed):
    record = valid_record("unused", f"bad-header-{bed.run_id}")
    poison = await bed.poison_then_valid("header-not-utf8", record.value, [*record.headers, ("x-note", b"\xff\xfe")])
    letters = await bed.assert_dead_lettered("header-not-utf8", poison, reason="'x-note' is not UTF-8",
                                             error_type="MalformedEnvelope")
    assert all(("x-note", b"\xff\xfe") in x.headers and x.value == record.value for x in letters)  # untouched


@pytest.mark.parametrize("case,headers,reason", [
    ("no-ce-headers", [("content-type", b"application/json")], "no ce_* headers"),
    ("missing-ce-id", [h for h in ce_headers() if h[0] != "ce_id"], "missing CloudEvents attribute 'id'"),
    ("invalid-ce-time", [*ce_headers(), ("ce_time", b"yesterday")], "invalid CloudEvents time"),
    ("invalid-ce-specversion", [h for h in ce_headers() if h[0] != "ce_specversion"] + [("ce_specversion", b"0.3")],
     "unsupported CloudEvents specversion"),
])
async def test_missing_or_invalid_cloudevents_headers(bed, case, headers, reason):
    value = json.dumps({"ambassador_id": f"x-{case}", "opted_out_at": "2026-01-01T00:00:00Z"}).encode()
    poison = await bed.poison_then_valid(case, value, headers)
    await bed.assert_dead_lettered(case, poison, reason=reason, error_type="MalformedEnvelope")


async def test_body_of_the_wrong_schema(bed):
    poison = await bed.poison_then_valid("wrong-schema", b'{"ambassador_id": 7, "reason": []}', ce_headers())
    await bed.assert_dead_lettered("wrong-schema", poison, reason="validation error(s) for AmbassadorOptedOut",
                                   error_type="ValidationError")


async def test_oversized_value(bed):
    record = valid_record("unused", f"big-{bed.run_id}")
    big = json.dumps({**json.loads(record.value), "padding": "x" * MAX_EVENT_BYTES}).encode()
    poison = await bed.poison_then_valid("oversized", big, record.headers)
    letters = await bed.assert_dead_lettered("oversized", poison, reason=f"exceeds the limit of {MAX_EVENT_BYTES}",
                                             error_type="UnacceptableRecord")
    assert all(x.value == big for x in letters)


async def test_handler_that_always_fails_is_retried_then_dead_lettered(bed):
    broken_id = f"broken-{bed.run_id}"
    bed.effects.broken.add(broken_id)
    record = valid_record("unused", broken_id)
    poison = await bed.poison_then_valid("handler-fails", record.value, record.headers)
    letters = await bed.assert_dead_lettered("handler-fails", poison, reason=f"cannot apply {broken_id}",
                                             error_type="ValueError", attempts="3")
    assert {x.header("ce_type") for x in letters} == {"ambassador.opted_out.v1"}


async def test_unknown_event_type_is_skipped_not_dead_lettered(bed):
    poison = await bed.poison_then_valid("unknown-type", b'{"whatever": 1}', ce_headers("someone.else.v1"))
    assert await bed.dead_letters_of(poison) == []


async def test_transient_error_is_redelivered_not_dead_lettered(bed):
    flaky_id = f"flaky-{bed.run_id}"
    for group in bed.applied:
        bed.effects.flaky[(group, flaky_id)] = 2
    record = valid_record("unused", flaky_id)
    poison = await bed.poison_then_valid("transient", record.value, record.headers)
    assert await bed.dead_letters_of(poison) == []
    assert await bed.times_applied(flaky_id) == {group: 1 for group in bed.applied}
    assert all(left == 0 for (_, aid), left in bed.effects.flaky.items() if aid == flaky_id)


async def test_replay_after_the_fix_applies_exactly_once(bed, infrastructure, kafka_topics):
    fixed_id = f"fixed-later-{bed.run_id}"
    bed.effects.broken.add(fixed_id)
    record = valid_record("unused", fixed_id)
    poison = await bed.poison_then_valid("replayed", record.value, record.headers)
    letters = await bed.assert_dead_lettered("replayed", poison, reason="cannot apply", error_type="ValueError",
                                             attempts="3")
    assert await bed.times_applied(fixed_id) == {group: None for group in bed.applied}

    # The console script lists them, with the event's type and id.
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infrastructure.kafka_bootstrap_servers,
           "TOPIC_PREFIX": kafka_topics.prefix}
    script = Path(sys.executable).with_name("advocacy-dlq")
    listed = subprocess.run([str(script), "list", "ambassador", "--json"], env=env, capture_output=True,
                            text=True, check=True, timeout=60)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = [r for r in rows if r["original"] == f"{poison.topic}[{poison.partition}]@{poison.offset}"]
    assert sorted(r["group"] for r in mine) == sorted(bed.applied)
    assert {(r["event_type"], r["event_id"], r["error_type"]) for r in mine} == \
        {("ambassador.opted_out.v1", record.header("ce_id"), "ValueError")}

    bed.effects.broken.discard(fixed_id)  # the fix is deployed
    args = ["--bootstrap-servers", infrastructure.kafka_bootstrap_servers, "--topic-prefix", kafka_topics.prefix]
    assert await dlq.run([*args, "replay", topics.AMBASSADOR, "--offset", letters[0].position]) == 0
    assert await bed.wait_until(lambda: _all_once(bed, fixed_id))

    # Replaying it again (the other group's letter, then all of them): nobody counts it twice.
    assert await dlq.run([*args, "replay", topics.AMBASSADOR, "--offset", letters[1].position]) == 0
    follower_id = f"after-replays-{bed.run_id}"
    await bed.send_valid(f"replayed-{bed.run_id}", follower_id)
    assert await bed.wait_until(lambda: _all_once(bed, follower_id))
    assert await bed.times_applied(fixed_id) == {group: 1 for group in bed.applied}
    assert await dlq.run([*args, "replay", topics.AMBASSADOR, "--offset", "999999"]) == 2  # not there: refused


class DlqBrieflyDown(EventPublisher):
    """Our publisher, refusing its first DLQ writes as if Kafka were unreachable."""

    def __init__(self, *args, failures: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures_left = failures
        self.written_at: float | None = None

    async def send_record(self, physical_topic, record, partition=None):
        if physical_topic.endswith(topics.DLQ_SUFFIX) and self.failures_left:
            self.failures_left -= 1
            raise KafkaTimeoutError()
        await super().send_record(physical_topic, record, partition=partition)
        self.written_at = time.monotonic()


async def test_a_dlq_write_failure_holds_the_partition_until_it_succeeds(infrastructure, kafka_topics, run_id,
                                                                         database, wait_until, worker_settings):
    applied_at: dict[str, float] = {}

    async def remember(delivery: Delivery) -> None:
        applied_at.setdefault(delivery.event.ambassador_id, time.monotonic())
        await apply_once(database["applied"], {"_id": delivery.event.ambassador_id}, {"$inc": {"times": 1}},
                         delivery)

    # The engagement topic, which no other test of this module reads: this group sees only its records.
    worker = ServiceWorker(worker_settings(), "poison-dlq-down")
    worker.publisher = publisher = DlqBrieflyDown(infrastructure.kafka_bootstrap_servers, kafka_topics,
                                                  client_id="poison-dlq-down", failures=2)
    group = f"poison-dlq-down-{run_id}"
    worker.consume([topics.ENGAGEMENT], group, {AmbassadorOptedOut: remember})
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap_servers, acks="all")
    await producer.start()
    await worker.start()
    try:
        key, topic = f"dlq-down-{run_id}".encode(), kafka_topics.physical(topics.ENGAGEMENT)
        poison = await producer.send_and_wait(topic, key=key, value=b"\x00garbage", headers=ce_headers())
        follower = valid_record(key.decode(), f"after-dlq-down-{run_id}")
        await producer.send_and_wait(topic, key=key, value=follower.value, headers=follower.headers)
        assert await wait_until(lambda: _exists(database["applied"], f"after-dlq-down-{run_id}"))
    finally:
        await worker.stop()
        await producer.stop()
    assert publisher.failures_left == 0 and publisher.written_at is not None
    assert applied_at[f"after-dlq-down-{run_id}"] > publisher.written_at  # nothing went past the poison record
    letters = [x for x in await dlq.read_dead_letters(infrastructure.kafka_bootstrap_servers,
                                                      kafka_topics.dlq(topics.ENGAGEMENT))
               if x.header(dlq.ORIGINAL_OFFSET) == str(poison.offset) and x.key == key
               and x.header(dlq.GROUP) == group]  # another test's worker may dead-letter it under its own group
    assert [(x.header(dlq.GROUP), x.header(dlq.ERROR_TYPE)) for x in letters] == [(group, "MalformedEnvelope")]


async def _exists(collection, _id) -> bool:
    return await collection.find_one({"_id": _id}) is not None
