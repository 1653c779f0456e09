"""SIGKILL the worker process several times while >= 100,000 events flow through the real Kafka
and database, then check every KPI against the plain reference, exactly."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from advocacy_common.envelope import to_kafka
from advocacy_common.events import ConversionType, EngagementKind, Network
from advocacy_common.mongo import create_client
from advocacy_common.topics import EVENT_TOPICS, TopicNames, ensure_topics
from metrics.models import Dimension, Period
from advocacy_common.repository import Storage
from metrics.reports import kpis_of
from metrics.service import load_snapshot
from metrics.store import MongoMetricsStore
from metrics_testkit import (
    BASE_DAY, CPM, Reference, build_log, engaged, envelope, erased, moved, opted_in, opted_out, published, shared,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANT = "kill"
PARTITIONS = 3
SHARES, ENGAGEMENTS, DUPLICATES = 10_000, 88_000, 2_500
TEAMS = ["red", "blue", "green", "gold"]
AMBASSADORS = [f"a{n}" for n in range(30)]
CONTENTS = {f"c{n}": f"camp{n % 4}" for n in range(16)}
NETWORKS = [Network.LINKEDIN, Network.X, Network.XING]
KINDS = [EngagementKind.IMPRESSION] * 4 + [EngagementKind.REACTION] * 2 + [
    EngagementKind.COMMENT, EngagementKind.COMMENT_REPLY, EngagementKind.RESHARE, EngagementKind.CLICK,
    EngagementKind.CONVERSION]


def workload(rng: random.Random) -> list:
    """Opt-ins, moves, opt-outs, erasures, content, shares and engagements in a shuffled order
    (many engagements before their share, shares before opt-ins), plus re-sent envelopes."""
    people = [opted_in(a, TEAMS[n % 4], NETWORKS[: 1 + n % 3], leaderboard=n % 3 == 0) for n, a in enumerate(AMBASSADORS)]
    people += [moved(a, "gold", NETWORKS) for a in AMBASSADORS[:5]] + [opted_out("a7"), erased("a8"), erased("a9")]
    facts = [published(c, campaign, [f"topic{n % 5}"]) for n, (c, campaign) in enumerate(CONTENTS.items())]
    shares = []
    for n in range(SHARES):
        ambassador, content = rng.choice(AMBASSADORS), rng.choice(list(CONTENTS))
        shares.append(shared(f"s{n}", ambassador, content, CONTENTS[content], TEAMS[int(ambassador[1:]) % 4],
                             rng.choice(NETWORKS), day=rng.randint(0, 2), personalized=rng.random() < 0.8,
                             reach=rng.randint(50, 5000)))
    facts += shares
    for n in range(ENGAGEMENTS):
        share = rng.choice(shares)
        kind = rng.choice(KINDS)
        facts.append(engaged(f"e{n}", share.share_id, share.ambassador_id, share.content_id,
                             share.campaign_id if n % 10 else None, share.team_id, kind, rng.randint(0, 40),
                             share.network, day=(share.shared_at - BASE_DAY).days,
                             conversion=rng.choice(list(ConversionType)) if kind is EngagementKind.CONVERSION else None,
                             unique=rng.random() < 0.5))
    rng.shuffle(facts)
    # Ambassador events keep their own order (one key, one partition) and arrive spread over the run.
    slots = sorted(rng.sample(range(len(facts)), len(people)))
    for offset, (slot, event) in enumerate(zip(slots, people)):
        facts.insert(slot + offset, event)
    envelopes = [(envelope(event, TENANT), event) for event in facts]
    for _ in range(DUPLICATES):
        envelopes.insert(rng.randrange(len(envelopes)), rng.choice(envelopes))
    return envelopes


async def produce(bootstrap: str, names: TopicNames, envelopes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=50,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending = []
        for env, event in envelopes:
            record = to_kafka(env)
            pending.append(await producer.send(names.physical(event.topic), key=record.key, value=record.value,
                                               headers=record.headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def lag(bootstrap: str, names: TopicNames, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(names.physical(t), p) for t in EVENT_TOPICS for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


def start_worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "metrics.main"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open("/tmp/metrics-kill-worker.log", "ab"))


async def test_every_kpi_is_exact_after_repeated_sigkills(infrastructure, unique_db_name):
    rng = random.Random(20261122)
    names = TopicNames(f"kill{uuid.uuid4().hex[:8]}.")
    await ensure_topics(infrastructure.kafka_bootstrap_servers, names, partitions=PARTITIONS)
    database, group = unique_db_name("metrics"), f"metrics-kill-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "METRICS_KAFKA_BOOTSTRAP_SERVERS": infrastructure.kafka_bootstrap_servers,
           "METRICS_MONGODB_URI": infrastructure.mongodb_uri, "METRICS_DATABASE": database,
           "METRICS_TOPIC_PREFIX": names.prefix, "METRICS_TOPIC_PARTITIONS": "3", "METRICS_CONSUMER_GROUP": group,
           "METRICS_BATCH_MAX_RECORDS": "5000", "METRICS_LOG_LEVEL": "WARNING"}
    envelopes = workload(rng)
    assert len(envelopes) >= 100_000

    started = time.monotonic()
    worker = start_worker(env)
    production = asyncio.create_task(produce(infrastructure.kafka_bootstrap_servers, names, envelopes))
    kills = 0
    try:
        while kills < 4:
            await asyncio.sleep(rng.uniform(5, 9))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
            worker = start_worker(env)
        await production
        deadline = time.monotonic() + 300
        while (remaining := await lag(infrastructure.kafka_bootstrap_servers, names, group)) > 0:
            assert time.monotonic() < deadline, f"{remaining} events still not consumed"
            await asyncio.sleep(1)
        elapsed = time.monotonic() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    print(f"\nkill test: {len(envelopes)} events, {kills} SIGKILLs, {elapsed:.1f}s, "
          f"{len(envelopes) / elapsed:.0f} events/s (including restarts and rebalances)")

    reference = Reference.of(build_log(envelopes, 1))
    client = create_client(infrastructure.mongodb_uri, "kill-test")
    store = MongoMetricsStore(await Storage.open(client[database], "kill-test"), 1)
    first = BASE_DAY.date()
    periods = [Period(first, first + timedelta(days=2))] + [Period(first + timedelta(days=n), first + timedelta(days=n))
                                                             for n in range(3)]
    checked = 0
    try:
        for dimension in Dimension:
            for period in periods:
                snapshot = await load_snapshot(store, TENANT, dimension, None, period)
                values = {row.value for row in snapshot.rows} | reference.values(TENANT, dimension)
                for value in values:
                    expected = reference.kpis(TENANT, dimension, value, period.first_day, period.last_day)
                    assert kpis_of(snapshot, value, period, CPM) == expected, (dimension, value, period)
                    checked += 1
        assert reference.is_erased(TENANT, "a8") and not await store.list_counters(
            TENANT, Dimension.AMBASSADOR, "a8", periods[0])
    finally:
        await client.close()
    assert checked > 200
