"""Composition root: the API application and the worker, from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from advocacy_common.http import api_resources, create_service_app
from advocacy_common.mongo import create_client
from advocacy_common.outbox import OutboxRelay
from advocacy_common.publishing import EventPublisher
from advocacy_common.topics import GDPR_EXPORT, ensure_topics
from advocacy_common.worker import ServiceWorker

from . import api, api_admin, api_directory, api_programme
from .handlers import build_handlers
from .service import AmbassadorService
from .settings import AmbassadorSettings
from .store import AmbassadorStores, ImmediatePublication, outbox_collections

DESCRIPTION = """The employee's side of the advocacy programme: directory (import, SCIM), volunteering
(opt-in/opt-out), charters and consent records, profiles, recognition, training, signals and GDPR.
Personal data lives only here; events carry ids and non-identifying attributes."""


def settings_from_environment() -> AmbassadorSettings:
    """The one place the environment is read (AMBASSADOR_* variables)."""
    return AmbassadorSettings()


def create_app(settings: AmbassadorSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings.kafka_bootstrap_servers, settings.topics, settings.topic_partitions)
        # The API publishes a person's events itself right after the write, so an opt-out
        # is on the topic when the call returns; the worker's relay remains the safety net.
        async with api_resources(app, settings, publisher=True) as resources:
            assert resources.publisher is not None
            stores = await AmbassadorStores.open(resources.database, settings.cursor_key)
            await stores.create_indexes()
            app.state.service = service_over(stores, settings, publisher=resources.publisher)
            yield

    app = create_service_app(settings, title="Ambassador service", description=DESCRIPTION, lifespan=lifespan)
    api.install_domain_errors(app)
    api_directory.install_scim_errors(app)
    # Versioned like the other services' APIs; SCIM keeps the path its clients expect.
    for router in (api.router, api_admin.router, api_programme.router, api_directory.router):
        app.include_router(router, prefix="/v1")
    app.include_router(api_directory.scim_router)
    return app


def service_over(stores: AmbassadorStores, settings: AmbassadorSettings,
                 publisher: EventPublisher | None = None) -> AmbassadorService:
    """The use cases over the MongoDB adapters; with a publisher, a person's events go out at once."""
    publish_now = ImmediatePublication(OutboxRelay([stores.people.collection], publisher),
                                       stores.people.collection) if publisher else None
    return AmbassadorService(
        people=stores.people, charters=stores.charters, signals=stores.signals, recognitions=stores.recognitions,
        modules=stores.modules, completions=stores.completions, exports=stores.exports,
        subject_attribute=settings.subject_attribute,
        import_max_rows=settings.import_max_rows, **({"publish_now": publish_now} if publish_now else {}))


def build_worker(settings: AmbassadorSettings) -> ServiceWorker:
    """The outbox relay over the collections that carry events, and the consumer of GDPR export parts."""
    client = create_client(settings.mongodb_uri, f"{settings.service_name}-worker")
    worker = ServiceWorker(settings, client_id=f"{settings.service_name}-worker",
                           outbox_collections=outbox_collections(client[settings.database]))
    # Built outside the event loop: the server's capabilities are not asked for (no adapter here needs them).
    stores = AmbassadorStores.without_detection(client[settings.database], settings.cursor_key)
    worker.consume([GDPR_EXPORT], f"{settings.service_name}-gdpr-export", build_handlers(service_over(stores, settings)))
    worker.mongo_client = client
    return worker
