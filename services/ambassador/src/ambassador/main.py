"""Entry points: `ambassador-api` and `ambassador-worker`."""

from __future__ import annotations

import asyncio

import uvicorn

from advocacy_common.logs import configure_logging

from .bootstrap import build_worker, create_app, settings_from_environment
from .settings import AmbassadorSettings


def run_api() -> None:
    settings = settings_from_environment()
    _observe(settings)
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                log_config=None, server_header=False)  # our redacting log handler; no Server banner


def run_worker() -> None:
    settings = settings_from_environment()
    _observe(settings)
    asyncio.run(_work(settings))


async def _work(settings: AmbassadorSettings) -> None:
    # The Kafka producer must be created inside the running event loop.
    await build_worker(settings).run()


def _observe(settings: AmbassadorSettings) -> None:
    configure_logging(settings.log_level, settings.log_json)
