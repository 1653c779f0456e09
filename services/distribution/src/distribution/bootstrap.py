"""Composition root: the API application and the worker, from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from advocacy_common.consuming import ProcessedEvents
from advocacy_common.http import create_service_app
from advocacy_common.mongo import create_client, ping
from advocacy_common.publishing import EventPublisher
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
        client = create_client(settings.mongodb_uri, f"{settings.service_name}-api")
        store = DistributionStore(client[settings.database])
        await store.create_indexes()
        # Webhook reports answer only after Kafka acknowledged, so the API has a producer of its own.
        publisher = EventPublisher(settings.kafka_bootstrap_servers, settings.topics,
                                   client_id=f"{settings.service_name}-api")
        await publisher.start()
        app.state.distribution = api.Distribution(store, publisher, Options.from_settings(settings))
        app.state.readiness["mongodb"] = lambda: ping(store.database)
        app.state.readiness["kafka"] = publisher.is_ready
        try:
            yield
        finally:
            await publisher.stop()
            await client.close()

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
