"""Test helpers shared by every service's tests and by the benchmarks (not shipped in any package).

`find_infrastructure()` gives Kafka and the database: from KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URI when set; else from testcontainers when a Docker engine answers; else
the project's own local servers, started with `make infra-up`. The fixtures built
on these live in tests/conftest.py. Importable as `advocacy_testkit` because
pyproject.toml puts tests/support on pytest's path (bench/ adds it itself).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from advocacy_common.envelope import Envelope, MalformedEnvelope, from_kafka

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Infrastructure:
    kafka_bootstrap_servers: str
    mongodb_uri: str


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@contextmanager
def find_infrastructure() -> Iterator[Infrastructure]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Infrastructure(kafka, mongo)
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer("apache/kafka:4.1.0").with_kraft() as kafka_container, \
                MongoDbContainer("mongo:8.0") as mongo_container:
            yield Infrastructure(kafka_container.get_bootstrap_server(), mongo_container.get_connection_url())
        return
    kafka_port = int(os.environ.get("KAFKA_PORT", "9092"))
    mongo_port = int(os.environ.get("FERRETDB_PORT", "27017"))
    if not (_port_open("127.0.0.1", kafka_port) and _port_open("127.0.0.1", mongo_port)):
        subprocess.run(["make", "-C", str(REPO_ROOT), "infra-up"], check=True)
    yield Infrastructure(f"127.0.0.1:{kafka_port}", f"mongodb://127.0.0.1:{mongo_port}/")


async def read_envelopes(bootstrap_servers: str, physical_topic: str, *, min_count: int = 1,
                         timeout: float = 15.0, predicate=None) -> list[Envelope]:
    """Read a topic from the start until `min_count` envelopes match `predicate` (or time runs out)."""
    consumer = AIOKafkaConsumer(physical_topic, bootstrap_servers=bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < min_count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    try:
                        envelope = from_kafka(record.key, record.value, record.headers)
                    except MalformedEnvelope:
                        continue  # e.g. a dead-lettered record that never was a CloudEvent
                    if predicate is None or predicate(envelope):
                        found.append(envelope)
    finally:
        await consumer.stop()
    return found


async def drain(stream: AsyncIterator) -> list:
    return [item async for item in stream]


def document_with_pending(document: dict, items) -> dict:
    """A raw document carrying pending events, as a repository's write leaves it (for relay tests)."""
    from advocacy_common.outbox import OUTBOX_FIELD, outbox_entries

    return {**document, OUTBOX_FIELD: outbox_entries(items)}
