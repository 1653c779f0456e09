"""Composition root: the API app, the worker and the rebuild's storage, wired from settings."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from advocacy_common.cursors import CursorCodec
from advocacy_common.gdpr_export import COLLECTION as EXPORT_PARTS
from advocacy_common.http import api_resources, create_service_app
from advocacy_common.logs import configure_logging
from advocacy_common.mongo import create_client
from advocacy_common.refreshing import RefreshingCache
from advocacy_common.repository import Storage
from advocacy_common.stream_tickets import MongoTicketLedger, StreamSlots, TicketSigner
from advocacy_common.worker import ServiceWorker, build_broker

from .api import StreamAccess, StreamTiming, install_problems, router, tickets_router
from .consumers import subscribe_generation
from .dashboard import mount_dashboard
from .models import FIRST_GENERATION
from .service import MetricsQueries, ReportPolicy
from .settings import MetricsSettings
from .store import MongoGenerations

DESCRIPTION = """Exact KPIs of the advocacy programme, computed from events: per tenant, campaign, content,
network, team and ambassador, per day, week or month. Team figures are shown only for teams of at least
the configured size; individual figures only to the person themself, or on the opt-in leaderboard."""


STREAM_TICKET_PURPOSE = "metrics-stream"


def load_settings() -> MetricsSettings:
    """The METRICS_* environment, read once per process (logging configured from it)."""
    settings = MetricsSettings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


async def open_generations(database: AsyncDatabase, settings: MetricsSettings) -> MongoGenerations:
    """The generations of the read model (the server's capabilities detected once, here)."""
    return MongoGenerations(await Storage.open(database, settings.cursor_key))


def create_app(settings: MetricsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with api_resources(app, settings) as resources:
            generations = await open_generations(resources.database, settings)
            await generations.prepare(await generations.current())
            app.state.queries = MetricsQueries(
                generations, ReportPolicy(settings.min_team_size, settings.cpm_by_network),
                RefreshingCache(settings.report_fresh_seconds, settings.report_stale_seconds))
            app.state.cursors = CursorCodec(settings.cursor_key.encode())
            app.state.stream_timing = StreamTiming(settings.stream_poll_seconds, settings.stream_heartbeat_seconds)
            app.state.stream_access = StreamAccess(
                TicketSigner(settings.stream_ticket_key, STREAM_TICKET_PURPOSE, settings.stream_ticket_ttl_seconds),
                MongoTicketLedger(resources.database), StreamSlots(settings.max_streams_per_subject))
            yield

    app = create_service_app(settings, title="Metrics", description=DESCRIPTION, lifespan=lifespan)
    install_problems(app)
    app.include_router(router)
    app.include_router(tickets_router)
    mount_dashboard(app)
    return app


class MetricsWorker(ServiceWorker):
    """The worker, following the live generation: after a rebuild it continues in the new one."""

    def __init__(self, settings: MetricsSettings):
        client = create_client(settings.mongodb_uri, f"{settings.service_name}-worker")
        # The relay publishes only the GDPR export parts: metrics emits no other event. Only the worker
        # writes them, so its relay waits to be woken by their hints instead of polling (`OutboxRelay`).
        super().__init__(settings, client_id=f"{settings.service_name}-worker", background=[self._follow_generation],
                         outbox_collections=[client[settings.database][EXPORT_PARTS]], outbox_written_here=True)
        self.metrics_settings = settings
        self.client = client
        self.generations: MongoGenerations | None = None
        self.generation = FIRST_GENERATION

    async def _consume_generation(self, generations: MongoGenerations, generation: int) -> None:
        store = await generations.prepare(generation)
        self.generation = generation
        self.broker = build_broker(self.metrics_settings.kafka_bootstrap_servers, f"{self.settings.service_name}-worker")
        self.subscriptions = []  # the former broker's are gone
        subscribe_generation(self, self.metrics_settings.consumer_group, generation, store,
                             self.metrics_settings.batch_max_records, self.metrics_settings.fold_every_seconds)

    async def start(self) -> None:
        self.generations = await open_generations(self.client[self.metrics_settings.database], self.metrics_settings)
        await self._consume_generation(self.generations, await self.generations.current())
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.client.close()

    async def _follow_generation(self, stop: asyncio.Event) -> None:
        assert self.generations is not None
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.metrics_settings.generation_poll_seconds)
                return
            except TimeoutError:
                pass
            live = await self.generations.current()
            if live != self.generation:
                await self.stop_consuming()
                await self._consume_generation(self.generations, live)
                await self.broker.start()


def build_worker(settings: MetricsSettings) -> MetricsWorker:
    return MetricsWorker(settings)
