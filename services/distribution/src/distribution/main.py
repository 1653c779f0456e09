"""Process entry points: `distribution-api` and `distribution-worker`."""

from __future__ import annotations

import asyncio

import uvicorn

from advocacy_common.logs import configure_logging

from .bootstrap import build_worker, create_app
from .settings import DistributionSettings


def run_api() -> None:
    settings = DistributionSettings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, proxy_headers=True,
                log_config=None, server_header=False)  # our redacting log handler; no Server banner


def run_worker() -> None:
    settings = DistributionSettings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(_work(settings))


async def _work(settings: DistributionSettings) -> None:
    # Kafka clients must be created inside the running event loop.
    await build_worker(settings).run()
