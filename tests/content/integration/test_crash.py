"""Crash test: the worker is SIGKILLed again and again while items come due; afterwards every item
was published exactly once as far as consumers can tell (one distinct event id), and none is missing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from advocacy_common.mongo import create_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ITEMS = 40
KILLS = 5


def worker_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "CONTENT_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CONTENT_MONGODB_URI": settings.mongodb_uri,
        "CONTENT_DATABASE": settings.database,
        "CONTENT_TOPIC_PREFIX": settings.topic_prefix,
        "CONTENT_TOPIC_PARTITIONS": "3",
        # A fresh group per start: rejoining the group of a SIGKILLed member waits for its session to
        # time out before FastStream's start returns, and the relay and scheduler start after it.
        "CONTENT_CONSUMER_GROUP": f"{settings.consumer_group}-{uuid.uuid4().hex[:6]}",
        # Small batches and fast polling: kills land in the middle of scheduler passes.
        "CONTENT_SCHEDULER_POLL_SECONDS": "0.05",
        "CONTENT_SCHEDULER_BATCH_SIZE": "3",
        "CONTENT_OUTBOX_POLL_SECONDS": "0.02",
        "CONTENT_LOG_LEVEL": "WARNING",
    }


def start_worker(settings) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_worker.py"))],
                            env=worker_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_publication_survives_sigkill(kit, content_settings, wait_until):
    campaign = await kit.campaign()
    start = datetime.now(UTC) + timedelta(seconds=2)
    items = [await kit.approved(campaign["id"], expires_at=None,
                                publish_at=(start + timedelta(milliseconds=300 * index)).isoformat())
             for index in range(ITEMS)]
    wanted = {item["id"] for item in items}
    rng = random.Random(7)

    client = create_client(content_settings.mongodb_uri, "content-crash-test")
    items_collection = client[content_settings.database]["content_items"]
    async def published() -> int:
        return await items_collection.count_documents({"tenant": kit.tenant, "status": "published"})

    published_after_kills = []
    for _ in range(KILLS):
        before = await published()
        process = start_worker(content_settings)

        async def working(process=process, before=before) -> bool:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            return await published() > before or before == ITEMS

        # Kill once the worker is busy (its start-up time varies with the machine's load).
        await wait_until(working, timeout=60, interval=0.05)
        await asyncio.sleep(rng.uniform(0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        published_after_kills.append(await published())
    # The kills really happened while items were coming due, not before or after.
    assert any(0 < count < ITEMS for count in published_after_kills), published_after_kills

    process = start_worker(content_settings)
    try:
        async def all_published_and_relayed() -> bool:
            published = await items_collection.count_documents({"tenant": kit.tenant, "status": "published"})
            pending = await items_collection.count_documents({"tenant": kit.tenant, "_outbox.0": {"$exists": True}})
            return published == ITEMS and pending == 0

        await wait_until(all_published_and_relayed, timeout=60, interval=0.25)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        await client.close()

    events = await kit.events(ITEMS, "content.published.v1", timeout=30, distinct=False)
    ids_by_item: dict[str, set[str]] = defaultdict(set)
    for event in events:
        ids_by_item[event.get_data()["content_id"]].add(event.get_id())
    assert set(ids_by_item) == wanted, f"missing: {wanted - set(ids_by_item)}"
    print(f"published after each kill: {published_after_kills}; "
          f"{len(events)} messages for {len(ids_by_item)} publications")
    assert all(len(ids) == 1 for ids in ids_by_item.values()), {k: v for k, v in ids_by_item.items() if len(v) > 1}
    for item in items:
        stored = await kit.get(item["id"])
        assert stored["version"] == item["version"] + 1
        assert [h["action"] for h in stored["history"]].count("publish") == 1
