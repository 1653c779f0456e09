"""Entry points: `metrics-api` and `metrics-worker` (settings from METRICS_* environment variables)."""

from __future__ import annotations

import asyncio

from typing import TYPE_CHECKING

from advocacy_common.logs import configure_logging
from advocacy_common.serving import frozen_after_startup, serve_api

from .settings import MetricsSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

# The bootstrap (every module of the service) is imported where it is used: with http_workers > 1 the
# process that calls run_api is uvicorn's supervisor, which only needs the settings (~80 MB less).


def api_app() -> FastAPI:
    """The app of one api process, from the environment (uvicorn calls it in each worker process)."""
    from .bootstrap import create_app, load_settings

    return frozen_after_startup(create_app(load_settings()))


def run_api() -> None:
    settings = MetricsSettings()
    configure_logging(settings.log_level, settings.log_json)
    serve_api(settings, "metrics.main:api_app")  # METRICS_HTTP_WORKERS processes


def run_worker() -> None:
    from .bootstrap import load_settings

    asyncio.run(_serve_worker(load_settings()))


async def _serve_worker(settings: MetricsSettings) -> None:
    from .bootstrap import build_worker

    # Kafka clients bind to the running loop: build the worker inside it.
    await build_worker(settings).run()


if __name__ == "__main__":
    run_worker()
