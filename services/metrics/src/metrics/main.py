"""Entry points: `metrics-api` and `metrics-worker` (settings from METRICS_* environment variables)."""

from __future__ import annotations

import asyncio

import uvicorn

from .bootstrap import build_worker, create_app, load_settings
from .settings import MetricsSettings


def run_api() -> None:
    settings = load_settings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                log_config=None, server_header=False)  # our redacting log handler; no Server banner


def run_worker() -> None:
    asyncio.run(_serve_worker(load_settings()))


async def _serve_worker(settings: MetricsSettings) -> None:
    # Kafka clients bind to the running loop: build the worker inside it.
    await build_worker(settings).run()


if __name__ == "__main__":
    run_worker()
