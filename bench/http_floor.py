"""The floor of our HTTP path on this machine: what a request costs before any route does any work.

    uv run python bench/http_floor.py [--variants bare,authenticated,anonymous] [--clients 1,10,50]
        [--runs 3] [--seconds 10] [--tokens 100] [--api-processes 1,2] [--profile]

One small JSON answer (`GET /floor`), served by a real uvicorn process (the services' own serving code,
`advocacy_common.serving`), loaded by wrk at each of --clients connections (closed loop), --runs times:

* `bare`: a plain Starlette app, the framework and server alone;
* `authenticated`: the same answer from an app made by `create_service_app` (OpenTelemetry, Prometheus
  metrics, hardening, rate limiter, problem handlers), behind `require_roles` with a real RS256 JWT
  from the dev issuer (wrk cycles over --tokens tokens of distinct subjects);
* `anonymous`: the same app and middleware stack, an endpoint without authentication (like `/r/{code}`).

Prints p50 / p99 / requests per second and the api's CPU ms per request (from /proc, summed over its
worker processes: the figure that does not move with the machine's load), the median (min … max) over
the runs, and peak RSS. --api-processes runs each variant with that many uvicorn worker processes
(`<SERVICE>_HTTP_WORKERS`). --profile prints a py-spy profile of each variant at the largest client count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_settings import SettingsConfigDict

from advocacy_common.serving import frozen_after_startup, serve_api
from advocacy_common.settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).parent))
from http_load import (  # noqa: E402 (bench/ on the path first)
    ApiProcess, free_port, load_average, measure, profile, service_environment, start_dev_issuer, wrk_script,
)

ANSWER = {"status": "ok", "items": [1, 2, 3]}
TENANT = "floor"


class FloorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FLOOR_", extra="ignore")

    service_name: str = "floor"
    kind: str = "stack"  # bare | stack


# The apps' modules are imported in the factories, as the services' main.py do: with several workers the
# process running `run_api` is uvicorn's supervisor and needs only the settings.

def bare_app() -> Starlette:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def floor(request: Request) -> JSONResponse:
        return JSONResponse(ANSWER)

    return Starlette(routes=[Route("/floor", floor), Route("/readyz", floor)])


def stack_app() -> FastAPI:
    from fastapi import Depends

    from advocacy_common.auth import require_roles
    from advocacy_common.http import create_service_app

    app = create_service_app(FloorSettings(), title="Floor", description="The HTTP floor benchmark's app")

    @app.get("/floor")
    async def authenticated(principal=Depends(require_roles("ambassador"))) -> dict:  # noqa: B008
        return ANSWER

    @app.get("/floor/anonymous")
    async def anonymous() -> dict:
        return ANSWER

    return app


def api_app() -> Starlette | FastAPI:
    """As the services' `main.api_app`: built from the environment, collector frozen after startup."""
    return frozen_after_startup(bare_app() if FloorSettings().kind == "bare" else stack_app())


def run_api() -> None:
    serve_api(FloorSettings(), "http_floor:api_app")


VARIANTS = {"bare": ("bare", "/floor", False), "authenticated": ("stack", "/floor", True),
            "anonymous": ("stack", "/floor/anonymous", False)}


def main(arguments: argparse.Namespace) -> None:
    server, issuer = start_dev_issuer()
    clients = [int(c) for c in arguments.clients.split(",")]
    print(f"http floor: clients {clients}, {arguments.runs} runs of {arguments.seconds:g} s, "
          f"api processes {arguments.api_processes}; load {load_average()}", flush=True)
    env = {**service_environment("FLOOR", "floor_unused", "floor.", server, issuer),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    tokens = [issuer.mint(tenant=TENANT, subject=f"a{n}", roles=["ambassador"], ttl_seconds=24 * 3600)
              for n in range(arguments.tokens)]
    try:
        with tempfile.TemporaryDirectory() as directory:
            for variant in arguments.variants.split(","):
                kind, path, authenticated = VARIANTS[variant]
                folder = Path(directory) / variant
                folder.mkdir()
                script = wrk_script([(path, t) for t in tokens] if authenticated else [(path, "")], folder)
                for processes in (int(p) for p in arguments.api_processes.split(",")):
                    port = free_port()
                    api = ApiProcess("http_floor", {**env, "FLOOR_KIND": kind, "FLOOR_HTTP_PORT": str(port)}, port,
                                     Path(tempfile.gettempdir()) / f"http_floor_{variant}_{os.getpid()}.log",
                                     processes=processes, prefix="FLOOR")
                    api.start()
                    try:
                        measure(f"{variant}, {processes} api process(es)", api.url, script, clients, arguments.runs,
                                arguments.seconds, api)
                        if arguments.profile:
                            print(profile(api, api.url, script, max(clients), arguments.seconds))
                        print(f"peak RSS: {api.peak_rss_mb():.0f} MB summed over {processes} worker(s) "
                              f"(largest {api.largest_rss_mb():.0f} MB); load {load_average()}\n", flush=True)
                    finally:
                        api.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="bare,authenticated,anonymous")
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tokens", type=int, default=100, help="distinct subjects whose tokens wrk cycles over")
    parser.add_argument("--api-processes", default="1", help="uvicorn worker processes, comma-separated: 1,2")
    parser.add_argument("--profile", action="store_true")
    main(parser.parse_args())
