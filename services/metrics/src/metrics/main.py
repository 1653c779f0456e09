"""Entry points: `metrics-api` and `metrics-worker` (settings from METRICS_* environment variables)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from advocacy_common.serving import serve_api

from .bootstrap import build_worker, create_app, load_settings
from .settings import MetricsSettings


def api_app() -> FastAPI:
    """The app of one api process, from the environment (uvicorn calls it in each worker process)."""
    return create_app(load_settings())


def run_api() -> None:
    serve_api(load_settings(), "metrics.main:api_app")  # METRICS_HTTP_WORKERS processes


def run_worker() -> None:
    asyncio.run(_serve_worker(load_settings()))


async def _serve_worker(settings: MetricsSettings) -> None:
    # Kafka clients bind to the running loop: build the worker inside it.
    await build_worker(settings).run()


if __name__ == "__main__":
    run_worker()
