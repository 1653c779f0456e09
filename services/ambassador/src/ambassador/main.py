"""Entry points: `ambassador-api` and `ambassador-worker`."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from advocacy_common.logs import configure_logging
from advocacy_common.serving import serve_api

from .bootstrap import build_worker, create_app, settings_from_environment
from .settings import AmbassadorSettings


def api_app() -> FastAPI:
    """The app of one api process, from the environment (uvicorn calls it in each worker process)."""
    settings = settings_from_environment()
    _observe(settings)
    return create_app(settings)


def run_api() -> None:
    settings = settings_from_environment()
    _observe(settings)
    serve_api(settings, "ambassador.main:api_app")  # AMBASSADOR_HTTP_WORKERS processes


def run_worker() -> None:
    settings = settings_from_environment()
    _observe(settings)
    asyncio.run(_work(settings))


async def _work(settings: AmbassadorSettings) -> None:
    # The Kafka producer must be created inside the running event loop.
    await build_worker(settings).run()


def _observe(settings: AmbassadorSettings) -> None:
    configure_logging(settings.log_level, settings.log_json)
