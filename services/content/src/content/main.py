"""Entry points: `content-api` and `content-worker`."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from advocacy_common.logs import configure_logging
from advocacy_common.serving import serve_api

from .bootstrap import build_worker, create_app, settings_from_environment
from .settings import ContentSettings


def _settings() -> ContentSettings:
    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def api_app() -> FastAPI:
    """The app of one api process, from the environment (uvicorn calls it in each worker process)."""
    return create_app(_settings())


def run_api() -> None:
    serve_api(_settings(), "content.main:api_app")  # CONTENT_HTTP_WORKERS processes


def run_worker() -> None:
    settings = _settings()

    async def work() -> None:
        # The Kafka clients must be created inside the running event loop.
        await build_worker(settings).run()

    asyncio.run(work())
