"""Entry points: `ambassador-api` and `ambassador-worker`."""

from __future__ import annotations

import asyncio

from typing import TYPE_CHECKING

from advocacy_common.logs import configure_logging
from advocacy_common.serving import frozen_after_startup, serve_api

from .settings import AmbassadorSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

# The bootstrap (every module of the service) is imported where it is used: with http_workers > 1 the
# process that calls run_api is uvicorn's supervisor, which only needs the settings (~80 MB less).


def api_app() -> FastAPI:
    """The app of one api process, from the environment (uvicorn calls it in each worker process)."""
    from .bootstrap import create_app, settings_from_environment

    settings = settings_from_environment()
    _observe(settings)
    return frozen_after_startup(create_app(settings))


def run_api() -> None:
    settings = AmbassadorSettings()  # as bootstrap.settings_from_environment, without importing the service
    _observe(settings)
    serve_api(settings, "ambassador.main:api_app")  # AMBASSADOR_HTTP_WORKERS processes


def run_worker() -> None:
    from .bootstrap import settings_from_environment

    settings = settings_from_environment()
    _observe(settings)
    asyncio.run(_work(settings))


async def _work(settings: AmbassadorSettings) -> None:
    from .bootstrap import build_worker

    # The Kafka producer must be created inside the running event loop.
    await build_worker(settings).run()


def _observe(settings: AmbassadorSettings) -> None:
    configure_logging(settings.log_level, settings.log_json)
