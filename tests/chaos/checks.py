"""Poison on purpose, and the end-of-run checks: dead letters, consumer lag, outboxes, KPIs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from advocacy_common.outbox import COMPRESSED_OUTBOX_FIELD
from advocacy_common.dlq import GROUP, ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TOPIC, read_dead_letters
from advocacy_common.topics import EVENT_TOPICS, TopicNames

# A type that each topic really carries, for the record whose data does not fit its schema.
TYPE_ON = {"advocacy.content": "content.published.v1", "advocacy.ambassador": "ambassador.opted_in.v1",
           "advocacy.share": "post.shared.v1", "advocacy.engagement": "engagement.received.v1"}
POISON_KINDS = ("not_json", "empty", "bad_headers", "wrong_schema")


def ce_headers(event_type: str, tenant: str = "poison") -> list[tuple[str, bytes]]:
    return [("ce_id", str(uuid.uuid4()).encode()), ("ce_source", b"/chaos"), ("ce_type", event_type.encode()),
            ("ce_specversion", b"1.0"), ("ce_time", b"2026-01-01T00:00:00Z"), ("ce_tenantid", tenant.encode()),
            ("content-type", b"application/json")]


def poison_record(kind: str, topic: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    event_type = TYPE_ON[topic]
    if kind == "not_json":
        return b"\x00{not json at all", ce_headers(event_type)
    if kind == "empty":
        return b"", ce_headers(event_type)
    if kind == "bad_headers":  # a CloudEvent's data, but a header that is not UTF-8 and no id or source
        return b'{"ok": true}', [("ce_type", event_type.encode()), ("ce_specversion", b"\xff\xfe1.0")]
    if kind == "wrong_schema":
        return json.dumps({"unexpected": "shape", "count": "many"}).encode(), ce_headers(event_type)
    raise ValueError(kind)


@dataclass
class Poison:
    names: TopicNames
    bootstrap: str
    injected: list[tuple[str, int, int, str]] = field(default_factory=list)  # physical topic, partition, offset, kind

    async def inject_round(self) -> None:
        """One record of each kind on each event topic; retried while the broker is away."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=10000)
        for attempt in range(60):
            try:
                await producer.start()
                break
            except Exception:
                await asyncio.sleep(1)
        try:
            for topic in EVENT_TOPICS:
                for kind in POISON_KINDS:
                    value, headers = poison_record(kind, topic)
                    physical = self.names.physical(topic)
                    for _ in range(60):
                        try:
                            sent = await producer.send_and_wait(physical, value, key=uuid.uuid4().bytes,
                                                                headers=headers)
                            break
                        except Exception:
                            await asyncio.sleep(1)
                    else:
                        raise RuntimeError("could not inject poison")
                    self.injected.append((physical, sent.partition, sent.offset, kind))
        finally:
            await producer.stop()

    def by_kind(self) -> Counter:
        return Counter(kind for *_, kind in self.injected)


async def committed_offsets(bootstrap: str, names: TopicNames) -> dict[str, dict[TopicPartition, int]]:
    """Every consumer group's committed offsets on our event topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = set(names.physical(t) for t in EVENT_TOPICS)
        result = {}
        for group, *_ in await admin.list_consumer_groups():
            offsets = await admin.list_consumer_group_offsets(group)
            mine = {tp: meta.offset for tp, meta in offsets.items() if tp.topic in ours and meta.offset >= 0}
            if mine:
                result[group] = mine
        return result
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, names: TopicNames) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([names.physical(t) for t in EVENT_TOPICS])
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    if len(partitions) < len(EVENT_TOPICS):
        raise RuntimeError(f"event topics not found: {described}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def lags(bootstrap: str, names: TopicNames) -> dict[str, int]:
    """Per group: end offset minus committed offset, summed over the partitions of the topics it consumes."""
    ends = await end_offsets(bootstrap, names)
    result = {}
    for group, offsets in (await committed_offsets(bootstrap, names)).items():
        topics = {tp.topic for tp in offsets}
        result[group] = sum(end - offsets.get(tp, 0) for tp, end in ends.items() if tp.topic in topics)
    return result


async def dead_letter_problems(bootstrap: str, names: TopicNames, poison: Poison,
                               groups: dict[str, set[str]]) -> tuple[list[str], Counter]:
    """Each injected record must be in its DLQ exactly once per group consuming its topic, and nothing else."""
    problems, letters_by_topic = [], Counter()
    for topic in EVENT_TOPICS:
        physical = names.physical(topic)
        expected = Counter((p, o, g) for t, p, o, _ in poison.injected if t == physical for g in groups.get(physical, ()))
        found = Counter()
        for letter in await read_dead_letters(bootstrap, names.dlq(topic)):
            if letter.header(ORIGINAL_TOPIC) != physical:
                problems.append(f"{names.dlq(topic)}@{letter.offset}: from {letter.header(ORIGINAL_TOPIC)}")
                continue
            found[int(letter.header(ORIGINAL_PARTITION) or -1), int(letter.header(ORIGINAL_OFFSET) or -1),
                  letter.header(GROUP)] += 1
        letters_by_topic[topic] = sum(found.values())
        for position, count in (found - expected).items():
            problems.append(f"{names.dlq(topic)}: {count} unexpected letter(s) for partition {position[0]} offset "
                            f"{position[1]} group {position[2]}")
        for position, count in (expected - found).items():
            problems.append(f"{names.dlq(topic)}: missing letter for partition {position[0]} offset {position[1]} "
                            f"group {position[2]}")
    return problems, letters_by_topic


async def pending_outboxes(mongodb_uri: str, databases: dict[str, str]) -> dict[str, int]:
    """Documents whose `_outbox` still holds events (or that hold compressed ones: queue documents, deleted
    once relayed), per service database and collection."""
    client = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=20000)
    try:
        pending = {}
        for service, name in databases.items():
            database = client[name]
            for collection in await database.list_collection_names():
                count = await database[collection].count_documents(
                    {"$or": [{"_outbox": {"$exists": True, "$ne": []}}, {COMPRESSED_OUTBOX_FIELD: {"$exists": True}}]})
                if count:
                    pending[f"{service}.{collection}"] = count
        return pending
    finally:
        await client.close()
