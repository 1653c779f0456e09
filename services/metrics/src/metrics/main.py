"""Entry points: `metrics-api` and `metrics-worker` (settings from METRICS_* environment variables)."""

from __future__ import annotations

import asyncio

import uvicorn

from advocacy_common.logs import configure_logging

from .bootstrap import build_worker, create_app
from .settings import MetricsSettings


def run_api() -> None:
    settings = MetricsSettings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                log_config=None, server_header=False)  # our redacting log handler; no Server banner


def run_worker() -> None:
    settings = MetricsSettings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(_serve_worker(settings))


async def _serve_worker(settings: MetricsSettings) -> None:
    # Kafka clients bind to the running loop: build the worker inside it.
    await build_worker(settings).run()


if __name__ == "__main__":
    run_worker()
