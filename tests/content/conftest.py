"""Fixtures of the content service's tests: settings, the API in-process, the worker, helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import ambassador_id_for
from advocacy_common.events import Event
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_common.topics import CONTENT
from advocacy_common.worker import ServiceWorker
from content.bootstrap import build_worker, create_app
from content.settings import ContentSettings


@pytest.fixture(scope="module")
def content_settings(infrastructure, kafka_topics, run_id, auth_settings) -> ContentSettings:
    # One database per test module (tests keep apart by tenant): index creation is slow on FerretDB.
    return ContentSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                           mongodb_uri=infrastructure.mongodb_uri,
                           database=f"content_{run_id}_{uuid.uuid4().hex[:6]}",
                           topic_prefix=kafka_topics.prefix, topic_partitions=3,
                           # Each test's worker reads the shared session topics from the start.
                           consumer_group=f"content-{uuid.uuid4().hex[:8]}",
                           scheduler_poll_seconds=0.2, outbox_poll_seconds=0.05, **auth_settings)


@pytest.fixture(scope="module")
async def api(content_settings):
    app = create_app(content_settings)
    async with LifespanManager(app):
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://content") as client:
            client.app = app
            yield client
    # Every test of the module is done with the database: leave nothing behind on the shared server.
    mongo = create_client(content_settings.mongodb_uri, "content-tests")
    await mongo.drop_database(content_settings.database)
    await mongo.close()


@asynccontextmanager
async def running_worker(settings: ContentSettings) -> AsyncIterator[ServiceWorker]:
    service_worker = build_worker(settings)
    await service_worker.start()
    try:
        yield service_worker
    finally:
        await service_worker.stop()
        await service_worker.mongo_client.close()


@pytest.fixture
async def worker(content_settings):
    async with running_worker(content_settings) as service_worker:
        yield service_worker


@pytest.fixture
def worker_starter():
    """For tests that start the worker late (catch-up) or twice."""
    return running_worker


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def amb(tenant: str, login: str) -> str:
    """The ambassador id that a token of `login` (its `sub`) in `tenant` implies, as ambassador events carry it."""
    return ambassador_id_for(tenant, login)


@pytest.fixture(scope="session", name="amb")
def amb_fixture():
    """`amb(tenant, login)` for the test modules (they cannot import conftest in importlib mode)."""
    return amb


def campaign_body(**overrides: Any) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {"name": "Spring hiring", "objective": "talent", "starts_on": (today - timedelta(days=10)).isoformat(),
            "ends_on": (today + timedelta(days=60)).isoformat(), "disclosure_line": "#WeAreAcme", **overrides}


def content_body(campaign_id: str, **overrides: Any) -> dict[str, Any]:
    publish_at = datetime.now(UTC) + timedelta(days=1)
    return {
        "campaign_id": campaign_id,
        "title": "Our new lab opens",
        "link_url": "https://example.com/lab?utm=1",
        "media": [{"url": "https://cdn.example.com/lab.jpg", "kind": "image", "alt": "The lab"}],
        "suggested_texts": {"linkedin": "Proud of our new lab #WeAreAcme", "x": "New lab! #WeAreAcme"},
        "topics": ["Research", "Innovation"],
        "language": "en",
        "audience": {"teams": ["R&D"], "locations": [], "languages": ["en"], "personas": ["expert"]},
        "networks": ["linkedin", "x"],
        "publish_at": publish_at.isoformat(),
        "expires_at": (publish_at + timedelta(days=7)).isoformat(),
        **overrides,
    }


class ContentKit:
    """What most tests do through the API, for one tenant, with an editor and a reviewer."""

    campaign_body = staticmethod(campaign_body)
    content_body = staticmethod(content_body)

    def __init__(self, api: AsyncClient, settings: ContentSettings, tenant: str, bearer):
        self.api = api
        self.settings = settings
        self.tenant = tenant
        self.bearer = bearer
        self.editor = bearer(tenant, "ed-1", "editor")
        self.reviewer = bearer(tenant, "rev-1", "reviewer")

    def as_(self, subject: str, *roles: str) -> dict[str, str]:
        return self.bearer(self.tenant, subject, *roles)

    async def campaign(self, **overrides: Any) -> dict:
        response = await self.api.post("/v1/campaigns", json=campaign_body(**overrides), headers=self.editor)
        assert response.status_code == 201, response.text
        return response.json()

    async def content(self, campaign_id: str, **overrides: Any) -> dict:
        response = await self.api.post("/v1/content", json=content_body(campaign_id, **overrides),
                                       headers=self.editor)
        assert response.status_code == 201, response.text
        return response.json()

    async def act(self, item_id: str, action: str, headers: dict, expect: int = 200, **kwargs: Any) -> dict:
        response = await self.api.post(f"/v1/content/{item_id}/{action}", headers=headers, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    async def approved(self, campaign_id: str, **overrides: Any) -> dict:
        """An item taken through draft, review and approval."""
        item = await self.content(campaign_id, **overrides)
        await self.act(item["id"], "submit", self.editor)
        return await self.act(item["id"], "approve", self.reviewer)

    async def get(self, item_id: str) -> dict:
        response = await self.api.get(f"/v1/content/{item_id}", headers=self.editor)
        assert response.status_code == 200, response.text
        return response.json()

    async def events(self, min_count: int, event_type: str | None = None, timeout: float = 20.0,
                     distinct: bool = True) -> list:
        """This tenant's events on the content topic, read with the CloudEvents SDK.

        `distinct` keeps the first message of each event id, as consumers do: the relay
        may send an envelope again when it could not clear it (a crash, or FerretDB's
        non-atomic updates bringing back an entry it had just pulled).
        """
        seen: set[str] = set()

        def wanted(event) -> bool:
            if event.get_extension("tenantid") != self.tenant or event_type not in (None, event.get_type()):
                return False
            if distinct and event.get_id() in seen:
                return False
            seen.add(event.get_id())
            return True

        return await read_cloudevents(self.settings.kafka_bootstrap_servers,
                                      self.settings.topics.physical(CONTENT), wanted, min_count, timeout)

    async def publish(self, events: list[Event]) -> None:
        """Put events on their topics as another service would (for the ambassador projection)."""
        publisher = EventPublisher(self.settings.kafka_bootstrap_servers, self.settings.topics,
                                   client_id="content-tests")
        await publisher.start()
        try:
            for event in events:
                await publisher.publish(event.topic, envelope_for(event, tenant_id=self.tenant, source="/ambassador"))
        finally:
            await publisher.stop()


@pytest.fixture
def kit(api, content_settings, tenant, bearer) -> ContentKit:
    return ContentKit(api, content_settings, tenant, bearer)


@pytest.fixture
def wait_until():
    return eventually


async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        outcome = await probe()
        if outcome:
            return outcome
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {outcome!r})")
        await asyncio.sleep(interval)


async def read_cloudevents(bootstrap: str, physical_topic: str, predicate: Callable[[Any], bool],
                           min_count: int, timeout: float = 20.0) -> list:
    """Read a topic from the start with the CloudEvents SDK until `min_count` events match."""
    consumer = AIOKafkaConsumer(physical_topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < min_count and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    message = ce_kafka.KafkaMessage(headers=dict(record.headers or ()), key=record.key,
                                                    value=record.value)
                    event = ce_kafka.from_binary(message, JSONFormat())
                    if predicate(event):
                        found.append(event)
    finally:
        await consumer.stop()
    return found
