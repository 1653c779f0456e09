"""Composition root: the API application and the worker, built from settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from advocacy_common.envelope import utcnow
from advocacy_common.http import api_resources, create_service_app
from advocacy_common.mongo import create_client
from advocacy_common.worker import ServiceWorker

from .api import install_domain_errors, router
from .consumers import subscribe
from .scheduler import scheduler_job
from .service import Clock, ContentService
from .settings import ContentSettings
from .store import ContentStore

DESCRIPTION = """Campaigns, content items and their editorial workflow (draft, review, approval,
scheduled publication, retirement). Produces `advocacy.content` events; keeps a projection of
opted-in ambassadors from `advocacy.ambassador`."""


def settings_from_environment() -> ContentSettings:
    """The one place the process' settings are read (CONTENT_* variables)."""
    return ContentSettings()


def service_on(store: ContentStore, clock: Clock = utcnow) -> ContentService:
    return ContentService(store.campaigns, store.items, store.tenant_settings, store.ambassadors, clock)


def create_app(settings: ContentSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with api_resources(app, settings) as resources:
            store = await ContentStore.open(resources.database, settings.cursor_key)
            await store.create_indexes()
            app.state.service = service_on(store)
            yield

    app = create_service_app(settings, title="Content service", description=DESCRIPTION, lifespan=lifespan)
    app.include_router(router)
    install_domain_errors(app)
    return app


def build_worker(settings: ContentSettings, clock: Clock = utcnow) -> ServiceWorker:
    """Consumers of ambassador events, the outbox relay of content items, the scheduler."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-worker")
    # Built outside the event loop (entry point, tests): no round trip to detect the server.
    store = ContentStore.without_detection(client[settings.database], settings.cursor_key)
    service = service_on(store, clock)

    async def prepare_then_schedule(stop: asyncio.Event) -> None:
        await store.create_indexes()
        await scheduler_job(service, settings.scheduler_poll_seconds, settings.scheduler_batch_size)(stop)

    worker = ServiceWorker(settings, client_id=f"{settings.service_name}-worker",
                           outbox_collections=[store.items.collection, store.export_parts.collection],
                           background=[prepare_then_schedule, store.ledger.prune])
    subscribe(worker, settings.consumer_group, store, service)
    # The worker's own database client: whoever runs the worker in-process closes it after stop()
    # (the process' exit does it for `content-worker`).
    worker.mongo_client = client
    return worker
