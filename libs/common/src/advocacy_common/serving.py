"""How a service's `api` process serves its app: uvicorn, in one process or in `http_workers` processes.

With `http_workers` > 1, uvicorn's supervisor binds the port once and starts that many worker
processes, each of which imports the service's app factory (`"<service>.main:api_app"`) and builds its
own app from the environment: one event loop per core instead of one for the whole machine.
Everything a process keeps in memory is then per worker: the rate limiter's `memory://` counts (N
workers admit up to N times a limit; `redis://` shares them), the tenants' in-progress write slots,
the verified-token cache, the services' read caches. In Kubernetes keep 1 and scale replicas instead:
the same per-replica caveats, and the scheduler sees each process.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import uvicorn

from .collector import freeze_startup_objects

if TYPE_CHECKING:  # the supervisor of several workers imports this module: it stays small
    from starlette.applications import Starlette

    from .settings import ServiceSettings


def uvicorn_options(settings: ServiceSettings, **options: Any) -> dict[str, Any]:
    """What every api process passes uvicorn: our redacting log handler (no log_config of uvicorn's),
    no Server banner, the app built by the factory in each worker."""
    return {"host": settings.http_host, "port": settings.http_port, "log_config": None, "server_header": False,
            "factory": True, "workers": settings.http_workers, **options}


def serve_api(settings: ServiceSettings, app_factory: str, **options: Any) -> None:
    """Serve `app_factory` ("module:function", called without arguments, reading the environment itself)
    until a signal stops uvicorn. One worker runs in this process. For several, this process becomes
    uvicorn's supervisor, a fresh interpreter (same pid, same environment) that imports uvicorn and our
    log handler only: the process that read the settings had imported the whole service (60-150 MB)."""
    config = uvicorn_options(settings, **options)
    if config["workers"] > 1:
        spec = json.dumps({"app": app_factory, "options": config, "log": [settings.log_level, settings.log_json]})
        os.execv(sys.executable, [sys.executable, "-c", "from advocacy_common.serving import supervise; supervise()",
                                  spec])
    uvicorn.run(app_factory, **config)


def supervise() -> None:
    """The supervisor's entry (`serve_api` execs it): uvicorn spawning the workers, our JSON, redacting logs."""
    from .logs import configure_logging

    spec = json.loads(sys.argv[1])
    configure_logging(*spec["log"])
    uvicorn.run(spec["app"], **spec["options"])


def frozen_after_startup(app: Starlette) -> Starlette:
    """`app`, whose lifespan ends its startup with `freeze_startup_objects()` (advocacy_common.collector).

    Everything alive once the app has started (modules, FastAPI's and pydantic's models, clients) is
    moved out of the collector's generations: a full collection then walks only what requests
    allocate. Without it each one walked the whole process, 75-110 ms with the event loop stopped,
    a few per 10,000 requests: the p99 of the HTTP floor at 50 connections (bench/http_floor.py). For
    the api processes only (main.py's `api_app`): tests build hundreds of apps in one process.
    """
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with started(application) as state:
            freeze_startup_objects()
            yield state

    app.router.lifespan_context = lifespan
    return app
