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

from typing import Any

import uvicorn

from .settings import ServiceSettings


def uvicorn_options(settings: ServiceSettings, **options: Any) -> dict[str, Any]:
    """What every api process passes uvicorn: our redacting log handler (no log_config of uvicorn's),
    no Server banner, the app built by the factory in each worker."""
    return {"host": settings.http_host, "port": settings.http_port, "log_config": None, "server_header": False,
            "factory": True, "workers": settings.http_workers, **options}


def serve_api(settings: ServiceSettings, app_factory: str, **options: Any) -> None:
    """Serve `app_factory` ("module:function", called without arguments, reading the environment itself)
    until a signal stops uvicorn. One worker runs in this process; more are spawned by uvicorn's supervisor."""
    uvicorn.run(app_factory, **uvicorn_options(settings, **options))
