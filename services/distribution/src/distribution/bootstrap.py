"""Composition root: the API application and the worker, from settings (read only here and in main)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from advocacy_common.consuming import ProcessedEvents
from advocacy_common.http import api_resources, create_service_app
from advocacy_common.mongo import create_client
from advocacy_common.publishing import EventPublisher
from advocacy_common.repository import ServerCapabilities, Storage
from advocacy_common.secretbox import DEV_ONLY_KEY_ID, Keyring, SecretBox
from advocacy_common.worker import ServiceWorker

from . import api
from .connectors import api as connectors_api
from .connectors.linkedin import LinkedInApi
from .connectors.options import ConnectorOptions, connector_options
from .connectors.poller import Poller
from .connectors.service import NetworkConnections
from .connectors.store import connector_stores, create_connector_indexes, reseal_tokens
from .connectors.x import XApi
from .adapters import (
    MongoConnectors, ResealCount, create_indexes, mongo_repositories, outbox_collections, outbox_queues,
    outbox_swept_queues,
    OUTBOX_SWEEP_SLICE, processed_events, upgrade_documents,
)
from .adapters.projections import flatten_earlier_profiles
from .consumers import subscribe
from .options import Options
from .ports import Repositories
from .service import Distribution, Engagement, Sharing, Tracking
from .settings import DistributionSettings

log = logging.getLogger(__name__)
DESCRIPTION = ("Feeds, authentic shares, tracked links and engagement ingestion. The platform prepares, "
               "the person posts: it never posts on anyone's behalf and stores no social-network password.")


async def build_distribution(database: AsyncDatabase, publisher: EventPublisher, settings: DistributionSettings,
                             http: httpx.AsyncClient) -> Distribution:
    """The use cases on the MongoDB adapters of `database`; `http` calls the networks (LinkedIn, X)."""
    storage = await Storage.open(database, settings.cursor_key)
    box = secret_box(settings)
    repositories = mongo_repositories(storage, box)
    options = Options.from_settings(settings)
    engagement = Engagement(repositories, publisher, options)
    connector = connector_options(settings)
    connections = NetworkConnections(connector_stores(storage, box), repositories, engagement,
                                     LinkedInApi(http, connector.linkedin), XApi(http, connector.x_api_base), connector)
    return Distribution(sharing=Sharing(repositories, options, storage.cursors),
                        tracking=Tracking(repositories, options), engagement=engagement, connections=connections,
                        options=options)


def network_http() -> httpx.AsyncClient:
    """The client that calls LinkedIn and X: bounded timeouts, no redirects followed (an API never needs one)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False,
                             headers={"User-Agent": "advocacy-distribution"})


def settings_from_environment() -> DistributionSettings:
    """The one place the environment is read (variables prefixed DISTRIBUTION_)."""
    return DistributionSettings()


def create_app(settings: DistributionSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Webhook reports answer only after Kafka acknowledged, so the API has a producer of its own.
        async with api_resources(app, settings, publisher=True) as resources, network_http() as http:
            assert resources.publisher is not None
            await create_indexes(resources.database)
            await create_connector_indexes(resources.database)
            await upgrade_documents(resources.database)
            app.state.distribution = await build_distribution(resources.database, resources.publisher, settings,
                                                              http)
            entered = await app.state.distribution.sharing.fill_books()
            if entered:
                log.info("entered %d shares confirmed before signature books existed into their books", entered)
            entered = await app.state.distribution.sharing.fill_shared()
            if entered:
                log.info("entered %d shares confirmed before shared contents existed", entered)
            yield

    app = create_service_app(settings, title="Distribution", description=DESCRIPTION, lifespan=lifespan)
    api.install(app)
    app.include_router(connectors_api.router)
    return app


def build_worker(settings: DistributionSettings) -> ServiceWorker:
    """Projections of content and ambassador events, comment tallies, and the outbox relay."""
    database = create_client(settings.mongodb_uri, f"{settings.service_name}-worker")[settings.database]
    ledger = ProcessedEvents(processed_events(database))
    worker = ServiceWorker(settings, f"{settings.service_name}-worker",
                           outbox_collections=outbox_collections(database), outbox_queues=outbox_queues(database),
                           background=[ledger.prune], outbox_sweep_slice=OUTBOX_SWEEP_SLICE,
                           outbox_swept_queues=outbox_swept_queues(database))
    subscribe(worker, OnFirstUse(lambda: _open_repositories(database, settings)), settings.consumer_group, ledger,
              OnFirstUse(lambda: _open_connector_stores(database, settings)))
    return worker


def build_poller(settings: DistributionSettings, options: ConnectorOptions | None = None) -> ServiceWorker:
    """The polling worker of the network connectors (`distribution-poller`): no consumer, one background
    loop; its deltas are published with Kafka's acknowledgement, like signed reports."""
    database = create_client(settings.mongodb_uri, f"{settings.service_name}-poller")[settings.database]
    options = options or connector_options(settings)
    started: list[Poller] = []

    async def poll(stop: asyncio.Event) -> None:
        async with network_http() as http:
            storage = await Storage.open(database, settings.cursor_key)
            await create_connector_indexes(database)
            box = secret_box(settings)
            engagement = Engagement(mongo_repositories(storage, box), worker.publisher, Options.from_settings(settings))
            poller = Poller(connector_stores(storage, box), engagement, LinkedInApi(http, options.linkedin),
                            XApi(http, options.x_api_base), options)
            started.append(poller)
            await poller.run(stop)

    worker = ServiceWorker(settings, f"{settings.service_name}-poller", background=[poll])
    worker.pollers = started  # type: ignore[attr-defined]  # for tests: the running poller
    return worker


async def _open_connector_stores(database: AsyncDatabase, settings: DistributionSettings):
    return connector_stores(await Storage.open(database, settings.cursor_key), secret_box(settings))


async def _open_repositories(database: AsyncDatabase, settings: DistributionSettings) -> Repositories:
    return mongo_repositories(await Storage.open(database, settings.cursor_key), secret_box(settings))


def secret_box(settings: DistributionSettings) -> SecretBox:
    """The keyring of the settings; a warning when the current key is the dev-only one."""
    if settings.secret_key_id == DEV_ONLY_KEY_ID:
        log.warning("connector secrets are sealed with the DEV-ONLY key: set DISTRIBUTION_SECRET_KEYS and "
                    "DISTRIBUTION_SECRET_KEY_ID in production")
    return SecretBox(Keyring.from_encoded(settings.secret_keys, settings.secret_key_id))


async def reseal_connector_secrets(settings: DistributionSettings) -> ResealCount:
    """Re-encrypt every connector secret (and seal any still in plain form), network token, PKCE verifier
    and network app secret under the current key."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-reseal")
    try:
        storage = await Storage.open(client[settings.database], settings.cursor_key)
        box = secret_box(settings)
        connectors = await MongoConnectors(storage, box).reseal_all()
        tokens, unreadable_tokens = await reseal_tokens(client[settings.database], box)
        return ResealCount(connectors.resealed + tokens, connectors.unreadable + unreadable_tokens)
    finally:
        await client.close()


async def flatten_profiles(settings: DistributionSettings) -> int:
    """The ambassador documents of earlier releases with their profile as one string (see
    `projections.flatten_earlier_profiles`); how many were rewritten."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-flatten-profiles")
    try:
        database = client[settings.database]
        return await flatten_earlier_profiles(database, (await ServerCapabilities.detect(database)).ferretdb)
    finally:
        await client.close()


class OnFirstUse:
    """The repositories, opened on the running loop when the first event arrives (opening detects the
    server's capabilities, which needs the loop; building the worker does not)."""

    def __init__(self, open_: Callable[[], Awaitable[Repositories]]):
        self._open = open_
        self._repositories: Repositories | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Repositories:
        if self._repositories is not None:
            return self._repositories
        async with self._lock:
            if self._repositories is None:
                self._repositories = await self._open()
            return self._repositories
