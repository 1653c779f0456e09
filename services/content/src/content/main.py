"""Entry points: `content-api` and `content-worker`."""

from __future__ import annotations

import asyncio

from typing import TYPE_CHECKING

from advocacy_common.logs import configure_logging
from advocacy_common.serving import frozen_after_startup, serve_api

from .settings import ContentSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

# The bootstrap (every module of the service) is imported where it is used: with http_workers > 1 the
# process that calls run_api is uvicorn's supervisor, which only needs the settings (~80 MB less).


def _settings() -> ContentSettings:
    settings = ContentSettings()  # as bootstrap.settings_from_environment, without importing the service
    configure_logging(settings.log_level, settings.log_json)
    return settings


def api_app() -> FastAPI:
    """The app of one api process, from the environment (uvicorn calls it in each worker process)."""
    from .bootstrap import create_app

    return frozen_after_startup(create_app(_settings()))


def run_api() -> None:
    serve_api(_settings(), "content.main:api_app")  # CONTENT_HTTP_WORKERS processes


def run_worker() -> None:
    from .bootstrap import build_worker

    settings = _settings()

    async def work() -> None:
        # The Kafka clients must be created inside the running event loop.
        await build_worker(settings).run()

    asyncio.run(work())
