"""The whole stack in one process: the four services' APIs and workers on the real Kafka and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from live_server import serving

import ambassador.bootstrap
import content.bootstrap
import distribution.bootstrap
import metrics.bootstrap
from advocacy_common.topics import TopicNames
from ambassador.settings import AmbassadorSettings
from content.settings import ContentSettings
from distribution.settings import DistributionSettings
from metrics.settings import MetricsSettings

SERVICES = {
    "content": (ContentSettings, content.bootstrap),
    "ambassador": (AmbassadorSettings, ambassador.bootstrap),
    "distribution": (DistributionSettings, distribution.bootstrap),
    "metrics": (MetricsSettings, metrics.bootstrap),
}


@dataclass
class Stack:
    content: AsyncClient
    ambassador: AsyncClient
    distribution: AsyncClient
    metrics: AsyncClient
    topics: TopicNames  # this stack's own topics


def own_topics(kafka_topics: TopicNames) -> tuple[str, TopicNames]:
    """Topics and consumer groups of a stack's own: the session's topics carry other tests' history
    and groups whose (possibly SIGKILLed) members would hold up this stack's rebalances."""
    stack_id = uuid.uuid4().hex[:6]
    return stack_id, TopicNames(prefix=f"{kafka_topics.prefix}e2e{stack_id}.")


async def start_services(exits: AsyncExitStack, infrastructure, topics: TopicNames, stack_id: str, run_id: str,
                         auth_settings: dict, overrides: dict[str, dict] | None = None,
                         ) -> AsyncIterator[tuple[str, object, object]]:
    """Each service's settings (with its `overrides`) and app, in the order of SERVICES; its worker starts
    (stopped by `exits`) once the caller has started the app."""
    for name, (settings_class, bootstrap) in SERVICES.items():
        group = {"consumer_group": f"e2e-{name}-{stack_id}"} if "consumer_group" in settings_class.model_fields \
            else {}
        settings = settings_class(**group, kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
                                  mongodb_uri=infrastructure.mongodb_uri,
                                  database=f"e2e_{name}_{run_id}_{uuid.uuid4().hex[:4]}",
                                  topic_prefix=topics.prefix, topic_partitions=3,
                                  **auth_settings, **(overrides or {}).get(name, {}))
        app = bootstrap.create_app(settings)
        yield name, settings, app
        worker = bootstrap.build_worker(settings)
        await worker.start()
        exits.push_async_callback(worker.stop)


@pytest.fixture(scope="module")
async def stack(infrastructure, kafka_topics, run_id, auth_settings) -> AsyncIterator[Stack]:
    clients = {}
    stack_id, topics = own_topics(kafka_topics)
    async with AsyncExitStack() as exits:
        async for name, _, app in start_services(exits, infrastructure, topics, stack_id, run_id, auth_settings):
            await exits.enter_async_context(LifespanManager(app, startup_timeout=60, shutdown_timeout=30))
            clients[name] = await exits.enter_async_context(
                AsyncClient(transport=ASGITransport(app), base_url=f"http://{name}.test"))
        yield Stack(**clients, topics=topics)


@pytest.fixture(scope="module")
async def served_stack(infrastructure, kafka_topics, run_id, auth_settings) -> AsyncIterator[dict[str, str]]:
    """The four services on real loopback ports (for clients in other processes): name -> base URL.
    Configured as `make up` runs them for the demo tenant, whose weeks of history are reported today for
    posts shared today (distribution's engagement backfill, see scripts/stack.sh)."""
    urls = {}
    stack_id, topics = own_topics(kafka_topics)
    overrides = {"distribution": {"engagement_backfill_days": 28}}
    async with AsyncExitStack() as exits:
        async for name, _, app in start_services(exits, infrastructure, topics, stack_id, run_id, auth_settings,
                                                 overrides):
            urls[name] = await exits.enter_async_context(serving(app))
        yield urls
