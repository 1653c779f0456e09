"""Composition root: the API application and the worker, from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from advocacy_common.consuming import ProcessedEvents
from advocacy_common.http import api_resources, create_service_app
from advocacy_common.mongo import create_client
from advocacy_common.topics import AMBASSADOR, CONTENT, ENGAGEMENT
from advocacy_common.worker import ServiceWorker

from . import api
from .handlers import ENGAGEMENT_HANDLERS, PROJECTION_HANDLERS, bind
from .options import Options
from .settings import DistributionSettings
from .store import DistributionStore

DESCRIPTION = ("Feeds, authentic shares, tracked links and engagement ingestion. The platform prepares, "
               "the person posts: it never posts on anyone's behalf and stores no social-network password.")


def create_app(settings: DistributionSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Webhook reports answer only after Kafka acknowledged, so the API has a producer of its own.
        async with api_resources(app, settings, publisher=True) as resources:
            store = DistributionStore(resources.database)
            await store.create_indexes()
            app.state.distribution = api.Distribution(store, resources.publisher, Options.from_settings(settings))
            yield

    app = create_service_app(settings, title="Distribution", description=DESCRIPTION, lifespan=lifespan)
    api.install(app)
    return app


def build_worker(settings: DistributionSettings) -> ServiceWorker:
    """Projections of content and ambassador events, comment tallies, and the outbox relay."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-worker")
    store = DistributionStore(client[settings.database])
    # The ledger skips events a producer's relay re-published after a crash (same id, new offset).
    ledger = ProcessedEvents(store.processed_events)
    worker = ServiceWorker(settings, f"{settings.service_name}-worker", outbox_collections=store.outbox_collections,
                           background=[ledger.prune])
    worker.consume([CONTENT, AMBASSADOR], settings.consumer_group, bind(PROJECTION_HANDLERS, store), ledger=ledger)
    worker.consume([ENGAGEMENT], f"{settings.consumer_group}-comments", bind(ENGAGEMENT_HANDLERS, store),
                   ledger=ledger)
    return worker
