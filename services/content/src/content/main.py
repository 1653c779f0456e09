"""Entry points: `content-api` and `content-worker`."""

from __future__ import annotations

import asyncio

import uvicorn

from advocacy_common.logs import configure_logging

from .bootstrap import build_worker, create_app, settings_from_environment
from .settings import ContentSettings


def _settings() -> ContentSettings:
    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def run_api() -> None:
    settings = _settings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None,
                server_header=False)  # no Server banner


def run_worker() -> None:
    settings = _settings()

    async def work() -> None:
        # The Kafka clients must be created inside the running event loop.
        await build_worker(settings).run()

    asyncio.run(work())
