"""A private distribution stack for the benchmarks: the real API (uvicorn) and worker processes on fresh topics
and a fresh database of the given Kafka and MongoDB/FerretDB, a dev token issuer, seeding through events and
the service's own adapters, and what the processes cost (peak RSS). Not a benchmark itself."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient, MongoClient

from advocacy_common.auth import ambassador_id_for
from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.events import (
    AmbassadorOptedIn, AmbassadorProfile, ContentPublished, NetworkPresence, SharingPreferences,
)
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_common.topics import TopicNames, ensure_topics
from distribution.adapters import ambassador_documents
from http_load import peak_rss_mb, process_tree, tree_cpu_seconds, workers_settled  # noqa: F401 (re-exported)

COMMAND_COUNTING = Path(__file__).parent / "command_counting"  # sitecustomize counting a process's commands

TENANT = "bench"
PARTITIONS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Stack:
    bootstrap: str
    uri: str
    log: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    port: int = field(default_factory=free_port)
    start_timeout: float = 600  # imports alone (scipy, via datasketch) take minutes on a loaded machine
    api_processes: int = 1  # DISTRIBUTION_HTTP_WORKERS: uvicorn worker processes of the api
    database_prefix: str = "distribution_bench_"
    count_commands: bool = False  # each process's MongoDB commands, per name (`command_counts`)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = TopicNames(f"bench{self.run}.")
        self.database = f"{self.database_prefix}{self.run}"
        self.counts_prefix = f"/tmp/{self.database}-commands"
        self.jwks = JwksServer([]).start()
        self.issuer = DevIssuer.generate(issuer=self.jwks.url)
        self.jwks.issuers.append(self.issuer)
        self.url = f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        counting = {"BENCH_COMMAND_COUNTS": self.counts_prefix, "BENCH_COMMAND_COUNTS_BY_COLLECTION": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(COMMAND_COUNTING), os.environ.get("PYTHONPATH")]))
                    } if self.count_commands else {}
        return {**os.environ, **counting, "DISTRIBUTION_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "DISTRIBUTION_MONGODB_URI": self.uri, "DISTRIBUTION_DATABASE": self.database,
                "DISTRIBUTION_TOPIC_PREFIX": self.names.prefix, "DISTRIBUTION_TOPIC_PARTITIONS": str(PARTITIONS),
                "DISTRIBUTION_CONSUMER_GROUP": f"bench-{self.run}", "DISTRIBUTION_HTTP_PORT": str(self.port),
                "DISTRIBUTION_HTTP_WORKERS": str(self.api_processes),
                "DISTRIBUTION_LOG_LEVEL": "WARNING", "DISTRIBUTION_AUTH_ISSUER": self.issuer.issuer,
                "DISTRIBUTION_AUTH_AUDIENCE": self.issuer.audience,
                "DISTRIBUTION_AUTH_JWKS_URL": f"{self.jwks.url}/.well-known/jwks.json"}

    def bearer(self, subject: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint(tenant=TENANT, subject=subject, roles=list(roles))}"}

    async def start(self) -> None:
        await ensure_topics(self.bootstrap, self.names, PARTITIONS)
        with self.log.open("ab") as errors:
            for name, entry in (("worker", "run_worker"), ("api", "run_api")):
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-c", f"from distribution.main import {entry}; {entry}()"], env=self.env(),
                    stdout=subprocess.DEVNULL, stderr=errors)
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + self.start_timeout
            while True:
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        if self.api_processes > 1:  # one answered; the others' start-up is not the load's CPU
                            await asyncio.to_thread(workers_settled, self.processes["api"].pid, self.api_processes)
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes.values()):
                    for process in self.processes.values():
                        process.kill()
                    raise RuntimeError(f"the distribution processes did not start in {self.start_timeout} s; "
                                       f"see {self.log}")
                await asyncio.sleep(0.3)

    async def publish_people_and_contents(self, ambassadors: int, contents: int) -> None:
        """Opted-in ambassadors (subjects a0, a1, ...) and published contents (c0, c1, ...), as events."""
        now = datetime.now(UTC)
        profile = AmbassadorProfile(persona="expert", topics=["energy"], languages=["en"],
                                    networks=[NetworkPresence(network="linkedin", audience_size=500)],
                                    preferences=SharingPreferences(max_shares_per_week=50))
        events = [AmbassadorOptedIn(ambassador_id=ambassador_id_for(TENANT, f"a{i}"), charter_version=0,
                                    opted_in_at=now, profile=profile) for i in range(ambassadors)]
        events += [ContentPublished(content_id=f"c{i}", version=1, campaign_id="camp", objective="awareness",
                                    title=f"Content {i}", link_url=f"https://example.com/c{i}",
                                    suggested_texts={"linkedin": "Our plant runs on renewable energy, proud of it."},
                                    topics=["energy"], language="en", networks=["linkedin"],
                                    publish_at=now - timedelta(hours=1)) for i in range(contents)]
        publisher = EventPublisher(self.bootstrap, self.names, client_id="bench")
        await publisher.start()
        try:
            await publisher.publish_many([(e.topic, envelope_for(e, tenant_id=TENANT, source="/bench"))
                                          for e in events])
        finally:
            await publisher.stop()
        client = AsyncMongoClient(self.uri)
        try:
            database = client[self.database]
            deadline = time.monotonic() + 300
            # The service's own reader of its ambassador projection, wherever it keeps it (buckets on FerretDB).
            while (len(await ambassador_documents(database, {"tenant": TENANT})) < ambassadors
                   or await database["contents"].count_documents({"tenant": TENANT}) < contents):
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not project the seed events in 300 s")
                await asyncio.sleep(0.3)
        finally:
            await client.close()

    def cpu_seconds(self) -> dict[str, float]:
        return {name: tree_cpu_seconds([process.pid]) for name, process in self.processes.items()}

    def command_counts(self) -> dict[str, dict[str, int]]:
        """Per process (summed over its process tree), the MongoDB commands sent so far, per command name
        (written every half second by command_counting/sitecustomize.py; empty unless `count_commands`)."""
        counts: dict[str, dict[str, int]] = {}
        for name, process in self.processes.items():
            total: dict[str, int] = {}
            for pid in process_tree(process.pid):
                path = Path(f"{self.counts_prefix}.{pid}.json")
                if path.exists():
                    for command, n in json.loads(path.read_text()).items():
                        total[command] = total.get(command, 0) + n
            counts[name] = total
        return counts

    def peak_rss(self) -> dict[str, float]:
        """Per process (the api's summed over its uvicorn workers, if several)."""
        return {name: sum(peak_rss_mb(pid) for pid in process_tree(process.pid))
                for name, process in self.processes.items()}

    async def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.jwks.stop()
        for path in Path(self.counts_prefix).parent.glob(f"{Path(self.counts_prefix).name}.*.json"):
            path.unlink(missing_ok=True)
        from aiokafka.admin import AIOKafkaAdminClient
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(self.names.all())
        finally:
            await admin.close()
        client = MongoClient(self.uri)
        client.drop_database(self.database)
        client.close()


def print_table(title: str, rows: list[tuple[str, str, str]], rss: dict[str, float]) -> None:
    """The summary: (figure, value, target) rows, then the processes' peak RSS against its target."""
    print(f"\n{title}\n\n| figure | value | target |\n| --- | --- | --- |")
    for row in rows + [("peak RSS MB " + " / ".join(rss), " / ".join(f"{mb:.0f}" for mb in rss.values()),
                        "< 300 each")]:
        print(f"| {' | '.join(row)} |")


async def topic_count(bootstrap: str, physical_topic: str) -> int:
    """Records on the topic now (sum of end offsets; the bench topics are never compacted or trimmed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(physical_topic, p) for p in consumer.partitions_for_topic(physical_topic) or
               range(PARTITIONS)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()
