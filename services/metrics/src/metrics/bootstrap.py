"""Composition root: the API app and the worker, wired from settings."""

from __future__ import annotations

import asyncio
import functools
from contextlib import asynccontextmanager

from fastapi import FastAPI

from advocacy_common.http import api_resources, create_service_app
from advocacy_common.mongo import create_client
from advocacy_common.topics import EVENT_TOPICS
from advocacy_common.worker import ServiceWorker, build_broker

from .api import router
from .handlers import handlers_for, project_batch
from .settings import MetricsSettings
from .store import FIRST_GENERATION, Generations, MongoMetricsStore

DESCRIPTION = """Exact KPIs of the advocacy programme, computed from events: per tenant, campaign, content,
network, team and ambassador, per day, week or month. Team figures are shown only for teams of at least
the configured size; individual figures only to the person themself, or on the opt-in leaderboard."""


def consumer_group(settings: MetricsSettings, generation: int) -> str:
    """Each generation has its own group: a rebuilt generation's offsets belong to it alone."""
    return settings.consumer_group if generation == FIRST_GENERATION else f"{settings.consumer_group}-g{generation}"



def create_app(settings: MetricsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with api_resources(app, settings) as resources:
            app.state.generations = Generations(resources.database)
            await app.state.generations.store(await app.state.generations.current()).ensure_indexes()
            yield

    app = create_service_app(settings, title="Metrics", description=DESCRIPTION, lifespan=lifespan)
    app.include_router(router)
    return app


def subscribe_generation(worker: ServiceWorker, settings: MetricsSettings, store: MongoMetricsStore) -> None:
    """Consume every topic in batches into one generation's collections."""
    worker.consume(EVENT_TOPICS, consumer_group(settings, store.generation), handlers_for(store),
                   batch_handler=functools.partial(project_batch, store), max_records=settings.batch_max_records)


class MetricsWorker(ServiceWorker):
    """The worker, following the live generation: after a rebuild it continues in the new one."""

    def __init__(self, settings: MetricsSettings):
        super().__init__(settings, client_id=f"{settings.service_name}-worker", background=[self._follow_generation])
        self.metrics_settings = settings
        self.client = create_client(settings.mongodb_uri, f"{settings.service_name}-worker")
        self.generations = Generations(self.client[settings.database])
        self.generation = FIRST_GENERATION

    async def _consume_generation(self, generation: int) -> None:
        store = self.generations.store(generation)
        await store.ensure_indexes()
        self.generation = generation
        self.broker = build_broker(self.metrics_settings.kafka_bootstrap_servers, f"{self.settings.service_name}-worker")
        subscribe_generation(self, self.metrics_settings, store)

    async def start(self) -> None:
        await self.generations.detect_server()
        await self._consume_generation(await self.generations.current())
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.client.close()

    async def _follow_generation(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.metrics_settings.generation_poll_seconds)
                return
            except TimeoutError:
                pass
            live = await self.generations.current()
            if live != self.generation:
                await self.broker.stop()
                await self._consume_generation(live)
                await self.broker.start()


def build_worker(settings: MetricsSettings) -> MetricsWorker:
    return MetricsWorker(settings)
