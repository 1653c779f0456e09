"""Content service figures on the local Kafka and FerretDB (API and worker in-process, real infrastructure).

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URI=mongodb://127.0.0.1:27017/ \
        uv run python bench/content_bench.py [--items 300] [--scheduled 50]

Measures: API latency of create, submit and approve; catch-up throughput (items already due when
the worker starts, until their publication events are read back from the topic); and the lag from
`publish_at` until the publication event is on Kafka for items that come due while the worker runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.envelope import from_kafka, parse_time
from advocacy_common.topics import CONTENT
from content.bootstrap import build_worker, create_app
from content.settings import ContentSettings


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(name: str, seconds: list[float]) -> str:
    millis = [s * 1000 for s in seconds]
    return (f"{name}: n={len(millis)} p50={statistics.median(millis):.1f} ms "
            f"p95={percentile(millis, 0.95):.1f} ms max={max(millis):.1f} ms")


class PublicationWatcher:
    """Reads the content topic and notes when each item's publication event arrived."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="earliest", enable_auto_commit=False)
        self.arrivals: dict[str, tuple[float, datetime]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer.start()
        try:
            while not stop.is_set():
                for records in (await self.consumer.getmany(timeout_ms=100)).values():
                    for record in records:
                        envelope = from_kafka(record.key, record.value, record.headers)
                        if envelope.type == "content.published.v1":
                            data = envelope.data or {}
                            self.arrivals.setdefault(data["content_id"],
                                                     (time.time(), parse_time(data["publish_at"])))
        finally:
            await self.consumer.stop()

    async def wait_for(self, ids: set[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.arrivals.keys():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids - self.arrivals.keys())} publications missing")
            await asyncio.sleep(0.05)


async def main(items: int, scheduled: int) -> None:
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    run = uuid.uuid4().hex[:8]
    settings = ContentSettings(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        mongodb_uri=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"),
        database=f"content_bench_{run}", topic_prefix=f"bench{run}.", topic_partitions=3,
        consumer_group=f"content-bench-{run}", auth_issuer=issuer.issuer, auth_audience=issuer.audience,
        auth_jwks_url=f"{server.url}/.well-known/jwks.json")

    def headers(subject: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.mint(tenant='bench', subject=subject, roles=list(roles))}"}

    editor, reviewer = headers("ed", "editor"), headers("rev", "reviewer")
    timings: dict[str, list[float]] = {"create": [], "submit": [], "approve": []}
    app = create_app(settings)
    try:
        async with LifespanManager(app), AsyncClient(transport=ASGITransport(app), base_url="http://b") as http:
            today = datetime.now(UTC).date()
            campaign = (await http.post("/v1/campaigns", headers=editor, json={
                "name": "Bench", "objective": "awareness", "starts_on": str(today - timedelta(days=1)),
                "ends_on": str(today + timedelta(days=30)), "disclosure_line": "#Bench"})).json()

            async def approved_item(publish_at: datetime) -> str:
                body = {"campaign_id": campaign["id"], "title": "Bench item", "link_url": "https://example.com/b",
                        "suggested_texts": {"linkedin": "Benchmarking #Bench", "x": "Bench #Bench"},
                        "topics": ["bench"], "language": "en", "networks": ["linkedin", "x"],
                        "publish_at": publish_at.isoformat()}
                started = time.perf_counter()
                response = await http.post("/v1/content", json=body, headers=editor)
                timings["create"].append(time.perf_counter() - started)
                item_id = response.json()["id"]
                for action, who in (("submit", editor), ("approve", reviewer)):
                    started = time.perf_counter()
                    response = await http.post(f"/v1/content/{item_id}/{action}", headers=who)
                    timings[action].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
                return item_id

            overdue = {await approved_item(datetime.now(UTC) - timedelta(seconds=1)) for _ in range(items)}
            for name, values in timings.items():
                print(summary(f"api {name}", values))

            stop = asyncio.Event()
            watcher = PublicationWatcher(settings.kafka_bootstrap_servers, settings.topics.physical(CONTENT))
            watching = asyncio.create_task(watcher.run(stop))
            worker = build_worker(settings)
            started = time.perf_counter()
            await worker.start()
            try:
                await watcher.wait_for(overdue)
                elapsed = time.perf_counter() - started
                print(f"catch-up: {items} overdue items published and on Kafka in {elapsed:.2f} s "
                      f"= {items / elapsed:.0f} items/s (worker start included)")

                # Due only once all of them are approved: the API time per item measured above, with a margin.
                per_item = sum(statistics.mean(values) for values in timings.values())
                base = datetime.now(UTC) + timedelta(seconds=2 + 1.5 * scheduled * per_item)
                upcoming = {await approved_item(base + timedelta(milliseconds=500 * i)) for i in range(scheduled)}
                await watcher.wait_for(upcoming)
                lags = [arrived - due.timestamp() for item_id, (arrived, due) in watcher.arrivals.items()
                        if item_id in upcoming]
                print(summary(f"lag publish_at -> event on Kafka (poll {settings.scheduler_poll_seconds} s)", lags))
            finally:
                await worker.stop()
                await worker.mongo_client.drop_database(settings.database)
                await worker.mongo_client.close()
                stop.set()
                await watching
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--scheduled", type=int, default=50)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.items, arguments.scheduled))
