"""Pytest fixtures shared by every service's tests (loaded from tests/conftest.py).

Kafka and the database come from KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI when
set; else from testcontainers when a Docker engine answers; else the project's
own local servers are started with `make infra-up`. Each test session uses its
own topic prefix and database names, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from .dev_issuer import DevIssuer, JwksServer
from .envelope import Envelope, MalformedEnvelope, from_kafka
from .topics import TopicNames, ensure_topics

REPO_ROOT = Path(__file__).resolve().parents[4]


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


@dataclass(frozen=True)
class Infrastructure:
    kafka_bootstrap_servers: str
    mongodb_uri: str


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Infrastructure]:
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


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def topic_names(run_id: str) -> TopicNames:
    return TopicNames(prefix=f"test{run_id}.")


@pytest.fixture(scope="session")
async def kafka_topics(infrastructure: Infrastructure, topic_names: TopicNames) -> TopicNames:
    """The event topics and DLQs under this session's prefix, created on the real broker."""
    await ensure_topics(infrastructure.kafka_bootstrap_servers, topic_names, partitions=3)
    return topic_names


@pytest.fixture(scope="session")
def dev_issuer() -> Iterator[tuple[DevIssuer, JwksServer]]:
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    yield issuer, server
    server.stop()


@pytest.fixture(scope="session")
def auth_settings(dev_issuer: tuple[DevIssuer, JwksServer]) -> dict[str, str]:
    """Settings fields that point a service at the test issuer."""
    issuer, server = dev_issuer
    return {"auth_issuer": issuer.issuer, "auth_audience": issuer.audience,
            "auth_jwks_url": f"{server.url}/.well-known/jwks.json"}


@pytest.fixture(scope="session")
def mint_token(dev_issuer: tuple[DevIssuer, JwksServer]):
    issuer, _ = dev_issuer

    def mint(tenant: str, subject: str, *roles: str, **kwargs) -> str:
        return issuer.mint(tenant=tenant, subject=subject, roles=list(roles), **kwargs)

    return mint


@pytest.fixture(scope="session")
def bearer(mint_token):
    """`bearer(tenant, subject, *roles)` -> headers with a valid token."""

    def headers(tenant: str, subject: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(tenant, subject, *roles)}"}

    return headers


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


@pytest.fixture
def unique_db_name(run_id: str):
    def name(service: str) -> str:
        return f"{service}_{run_id}_{uuid.uuid4().hex[:6]}"

    return name


async def drain(stream: AsyncIterator) -> list:
    return [item async for item in stream]
