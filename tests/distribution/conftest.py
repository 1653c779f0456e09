"""Shared fixtures: one API and one worker for the session on the real Kafka and database.

Each test works in its own tenant (`tenant` fixture), so tests share the running service without
seeing each other's data, and the session pays for the consumer start-up once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from advocacy_common.auth import ambassador_id_for
from advocacy_common.events import (
    AmbassadorOptedIn, AmbassadorProfile, ContentPublished, Event, NetworkPresence, Objective, Persona,
)
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher, envelope_for
from advocacy_testkit import read_envelopes
from distribution.bootstrap import build_worker, create_app
from distribution.settings import DistributionSettings
from advocacy_common.repository import Storage
from distribution.adapters import create_indexes, mongo_repositories
from distribution.bootstrap import secret_box

NOW = datetime.now(UTC)


@pytest.fixture(scope="session")
def settings(infrastructure, kafka_topics, auth_settings, run_id) -> DistributionSettings:
    return DistributionSettings(kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                                mongodb_uri=infrastructure.mongodb_uri, database=f"distribution_{run_id}",
                                topic_prefix=kafka_topics.prefix, topic_partitions=3,
                                consumer_group=f"distribution-{run_id}", outbox_poll_seconds=0.05,
                                public_base_url="https://go.example.com", **auth_settings)


@pytest.fixture(scope="session")
async def worker(settings):
    worker = build_worker(settings)
    await worker.start()
    yield worker
    await worker.stop()


@pytest.fixture(scope="session")
async def client(settings, worker):
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60), \
            AsyncClient(transport=ASGITransport(app), base_url="http://test") as client:
        yield client


@pytest.fixture(scope="session")
async def distribution_db(settings):
    """The service's database, for tests that look at documents as stored."""
    mongo = create_client(settings.mongodb_uri, "distribution-tests")
    yield mongo[settings.database]
    await mongo.close()


@pytest.fixture(scope="session")
async def repositories(settings, distribution_db):
    """The service's own adapters on its database (with its indexes), to read and write as the use cases do."""
    await create_indexes(distribution_db)
    return mongo_repositories(await Storage.open(distribution_db, settings.cursor_key), secret_box(settings))


@pytest.fixture(scope="session")
async def publisher(settings, kafka_topics):
    publisher = EventPublisher(settings.kafka_bootstrap_servers, kafka_topics, client_id="distribution-tests")
    await publisher.start()
    yield publisher
    await publisher.stop()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def emit(publisher, tenant) -> Callable[..., Awaitable[None]]:
    """Publish events of other services (content, ambassador) as they would."""

    async def emit(*events: Event, tenant_id: str | None = None) -> None:
        for event in events:
            await publisher.publish(event.topic, envelope_for(event, tenant_id=tenant_id or tenant, source="/tests"))

    return emit


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 45.0) -> Any:
    """Retry an async check until it stops raising AssertionError (consumers are asynchronous)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
def wait_for():
    return eventually


@pytest.fixture
def read_topic(settings, kafka_topics):
    async def read(logical: str, predicate, min_count: int = 1, timeout: float = 15.0):
        return await read_envelopes(settings.kafka_bootstrap_servers, kafka_topics.physical(logical),
                                    min_count=min_count, timeout=timeout, predicate=predicate)

    return read


def profile(**overrides) -> AmbassadorProfile:
    values: dict[str, Any] = dict(persona=Persona.EXPERT, topics=["energy", "data"], languages=["en", "fr"],
                                  team_id="team-ops", location="lyon",
                                  networks=[NetworkPresence(network="linkedin", audience_size=850),
                                            NetworkPresence(network="x", audience_size=120)])
    values.update(overrides)
    return AmbassadorProfile(**values)


def opted_in(ambassador_id: str, charter_version: int = 1, **profile_overrides) -> AmbassadorOptedIn:
    return AmbassadorOptedIn(ambassador_id=ambassador_id, charter_version=charter_version, opted_in_at=NOW,
                             profile=profile(**profile_overrides))


SUGGESTED = ("We are proud to announce that our new plant in Lyon is now running on 100% renewable energy. "
             "This is a major step towards our goal of carbon neutrality by 2030. Thanks to all the teams who "
             "made this possible! #sustainability")


def content(content_id: str, version: int = 1, **overrides) -> ContentPublished:
    values: dict[str, Any] = dict(
        content_id=content_id, version=version, campaign_id="camp-1", objective=Objective.AWARENESS,
        title=f"Title {content_id}", link_url="https://www.example.com/news/green?lang=en",
        suggested_texts={"linkedin": SUGGESTED, "x": "Our Lyon plant runs on 100% renewable energy! #sustainability"},
        topics=["energy"], language="en", networks=["linkedin", "x"], disclosure_line=None,
        publish_at=NOW - timedelta(hours=2), expires_at=NOW + timedelta(days=10))
    values.update(overrides)
    return ContentPublished(**values)


OWN_WORDS = ("I visited our Lyon site last month and watched the solar panels go up. Today the whole plant runs "
             "on renewable power, and honestly it makes me proud to work here.")


def amb(tenant: str, login: str) -> str:
    """The ambassador id that a token of `login` (its `sub`) in `tenant` implies, as ambassador events carry it."""
    return ambassador_id_for(tenant, login)


@pytest.fixture(scope="session", name="amb")
def amb_fixture():
    """`amb(tenant, login)` for the test modules (they cannot import conftest in importlib mode)."""
    return amb


@pytest.fixture(scope="session")
def make():
    """Event factories for the tests (test modules cannot import conftest in importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(profile=profile, opted_in=opted_in, content=content, now=NOW, suggested=SUGGESTED,
                           own_words=OWN_WORDS)


@pytest.fixture
def projected(repositories, tenant, wait_for):
    """Wait until the worker projected the given ambassadors and contents of this test's tenant."""

    async def projected(ambassadors: tuple[str, ...] = (), contents: dict[str, int] | None = None) -> None:
        async def check():
            for ambassador_id in ambassadors:
                assert await repositories.ambassadors.get(tenant, ambassador_id) is not None
            for content_id, version in (contents or {}).items():
                view = await repositories.contents.get(tenant, content_id)
                assert view is not None and view.version >= version

        await wait_for(check)

    return projected
