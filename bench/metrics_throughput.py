"""Metrics service figures on the local Kafka and FerretDB (worker in-process, real infrastructure).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \
        uv run python bench/metrics_throughput.py [--events 30000] [--batch 5000]

Measures: catch-up throughput (events already on the topics when the worker starts, until the
consumer group's lag is zero) and freshness (time from publishing one engagement until the
tenant overview shows it, at steady state). The workload is the kill test's: shuffled shares and
engagements, opt-ins, erasures and re-sent envelopes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics" / "integration"))

from advocacy_common.events import EngagementKind  # noqa: E402
from advocacy_common.publishing import EventPublisher  # noqa: E402
from advocacy_common.topics import TopicNames, ensure_topics  # noqa: E402
from metrics.bootstrap import build_worker  # noqa: E402
from metrics.models import TENANT_VALUE, Dimension, trailing_days  # noqa: E402
from metrics.reports import kpis_of  # noqa: E402
from metrics.service import load_snapshot as load  # noqa: E402
from metrics.settings import MetricsSettings  # noqa: E402
from metrics_testkit import BASE_DAY, engaged, envelope  # noqa: E402
from test_kill_worker import PARTITIONS, TENANT, lag, produce, workload  # noqa: E402


async def main(events: int, batch: int) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    names = TopicNames(f"bench{uuid.uuid4().hex[:6]}.")
    await ensure_topics(bootstrap, names, partitions=PARTITIONS)
    settings = MetricsSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=names.prefix,
                               topic_partitions=PARTITIONS, batch_max_records=batch,
                               mongodb_uri=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"),
                               database=f"metrics_bench_{uuid.uuid4().hex[:6]}",
                               consumer_group=f"metrics-bench-{uuid.uuid4().hex[:6]}")
    envelopes = workload(random.Random(7))[:events]
    await produce(bootstrap, names, envelopes)

    worker = build_worker(settings)
    started = time.monotonic()
    await worker.start()
    try:
        while await lag(bootstrap, names, settings.consumer_group) > 0:
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
        print(f"catch-up: {len(envelopes)} events in {elapsed:.1f}s = {len(envelopes) / elapsed:.0f} events/s "
              f"(batches of up to {batch})")

        publisher = EventPublisher(bootstrap, names, client_id="metrics-bench")
        await publisher.start()
        store = worker.generations.store(worker.generation)
        period = trailing_days(BASE_DAY.date(), 3)
        delays = []
        for n in range(20):
            before = kpis_of(await load(store, TENANT, Dimension.TENANT, TENANT_VALUE, period), TENANT_VALUE, period, {})
            event = engaged(f"fresh{n}", "s1", "a1", "c1", "camp1", "red", EngagementKind.CLICK, 1)
            sent = time.monotonic()
            await publisher.publish(event.topic, envelope(event, TENANT))
            while True:
                now = kpis_of(await load(store, TENANT, Dimension.TENANT, TENANT_VALUE, period), TENANT_VALUE, period, {})
                if now["clicks"] > before["clicks"]:
                    break
                await asyncio.sleep(0.02)
            delays.append(time.monotonic() - sent)
        await publisher.stop()
        print(f"freshness: median {statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
              f"(publish -> visible in the overview, 20 events)")
    finally:
        await worker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=5_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.batch))
