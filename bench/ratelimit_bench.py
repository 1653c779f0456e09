"""Does one tenant's burst of writes raise another tenant's latency? (per-tenant write rate limits)

    uv run python bench/ratelimit_bench.py [--seconds 10] [--runs 3]

An app made by `create_service_app` (so the whole hardening stack runs: body scan, JWT, rate limiter)
with one write endpoint over a simulated store that, like our FerretDB proxy, takes a few writes at
a time (2 slots, 30 ms each), served by uvicorn in a process of its own. A calm tenant (this process)
writes at a steady pace while a noisy tenant (another process, as an attacker's client would be) sends
five times its quota at a fixed rate. Scenarios, each over `--runs` runs: the calm tenant alone; with
the noisy burst under the default-style limits; the same rate limits without the per-tenant
in-progress cap; and limits set out of reach, to show what the limiter prevents. The goal: the calm
tenant's p99 with the burst within 20 % of its p99 alone. "store p99" is the calm tenant's wait for
the store plus its write, measured inside the app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time

import httpx
import uvicorn
from fastapi import Depends

from advocacy_common.auth import Principal, authenticate
from advocacy_common.dev_issuer import DevIssuer, JwksServer
from advocacy_common.http import create_service_app
from advocacy_common.settings import ServiceSettings

# Like FerretDB behind our proxy: an update takes ~30 ms and only a few run at once.
STORE_SLOTS = 2
STORE_WRITE_SECONDS = 0.030
CALM_SUBJECTS = 4
CALM_PAUSE_SECONDS = 0.25  # each calm writer: ~3.5 writes/s, ~14/s for the tenant
NOISY_SUBJECTS = 6
NOISY_PAUSE_SECONDS = 0.08  # each noisy writer: 12.5 attempts/s, 75/s for the tenant (~5x its quota)
# Limits sized to the store: a tenant at its quota takes a quarter of the store's ~66 writes/s, and holds
# at most one of its two slots at a time (the in-progress cap: without it the moving window admits the
# next second's 16 writes at once and they queue in the store ahead of the calm tenant's).
LIMITED = {"rate_limit_tenant_writes": "16/second", "rate_limit_subject_writes": "5/second",
           "rate_limit_tenant_concurrent_writes": 1}
RATES_ONLY = {**LIMITED, "rate_limit_tenant_concurrent_writes": 0}
UNLIMITED = {"rate_limit_tenant_writes": "1000000/second", "rate_limit_subject_writes": "1000000/second",
             "rate_limit_tenant_concurrent_writes": 0}
SCENARIOS = (("calm tenant alone", LIMITED, False),
             ("with a noisy tenant, limits on", LIMITED, True),
             ("with a noisy tenant, rate limits without the in-progress cap", RATES_ONLY, True),
             ("with a noisy tenant, limits out of reach", UNLIMITED, True))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_app(settings: dict):
    app = create_service_app(ServiceSettings(service_name="ratelimit-bench", **settings),
                             title="bench", description="bench")
    slots = asyncio.Semaphore(STORE_SLOTS)
    app.state.store_seconds = []  # the calm tenant's wait for the store plus its write, measured in the app

    @app.post("/v1/notes", status_code=201)
    async def write(body: dict, principal: Principal = Depends(authenticate)) -> dict:
        started = time.perf_counter()
        async with slots:
            await asyncio.sleep(STORE_WRITE_SECONDS)
        if principal.tenant == "calm":
            app.state.store_seconds.append(time.perf_counter() - started)
        return {"tenant": principal.tenant}

    @app.get("/store-seconds")
    async def store_seconds() -> list[float]:
        return app.state.store_seconds

    return app


def serve(port: int, settings: dict) -> None:
    """The server process: the app on uvicorn, no access log (as deployed behind a log-redacting proxy)."""
    uvicorn.run(build_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def flood(url: str, tokens: list[str], seconds: float) -> None:
    """The noisy process. Open loop, as an attacker or a runaway script: a new write every pause per subject,
    answered or not. Prints the statuses it got."""
    statuses: dict[int, int] = {}
    until = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        try:
            response = await client.post("/v1/notes", json={"text": "spam"}, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        except httpx.HTTPError:
            statuses[0] = statuses.get(0, 0) + 1

    async def subject(client: httpx.AsyncClient, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        in_flight = []
        while time.monotonic() < until:
            in_flight.append(asyncio.create_task(one(client, headers)))
            await asyncio.sleep(NOISY_PAUSE_SECONDS)
        await asyncio.gather(*in_flight)

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(subject(client, token) for token in tokens))
    print(json.dumps(statuses))


async def writer(client: httpx.AsyncClient, headers: dict[str, str], pause: float, until: float,
                 latencies: list[float], statuses: dict[int, int]) -> None:
    """Closed loop, as a well-behaved client: the next write after the answer and a pause."""
    while time.monotonic() < until:
        started = time.perf_counter()
        response = await client.post("/v1/notes", json={"text": "hello"}, headers=headers)
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        await asyncio.sleep(pause)


async def ready(url: str, client: httpx.AsyncClient, warm_up: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await client.post(f"{url}/v1/notes", json={}, headers=warm_up)  # JWKS fetched once
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def scenario(issuer: DevIssuer, auth: dict[str, str], limits: dict, noisy: bool,
                   seconds: float) -> tuple[float, float, float, dict[int, int], dict[int, int]]:
    def token(tenant: str, subject: str) -> str:
        return issuer.mint(tenant=tenant, subject=subject, roles=["editor"])

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), json.dumps({**auth, **limits})])
    calm_latencies: list[float] = []
    calm_statuses: dict[int, int] = {}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await ready(url, client, {"Authorization": f"Bearer {token('warm-up', 'w')}"})
            flooder = None
            if noisy:
                tokens = [token("noisy", f"n{i}") for i in range(NOISY_SUBJECTS)]
                flooder = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--flood", url, json.dumps(tokens), str(seconds),
                    stdout=asyncio.subprocess.PIPE)
                await asyncio.sleep(0.5)  # the flooder's interpreter is up before the calm tenant starts
            until = time.monotonic() + seconds
            await asyncio.gather(*(writer(client, {"Authorization": f"Bearer {token('calm', f'c{i}')}"},
                                          CALM_PAUSE_SECONDS, until, calm_latencies, calm_statuses)
                                   for i in range(CALM_SUBJECTS)))
            noisy_statuses = json.loads((await flooder.communicate())[0]) if flooder else {}
            store = (await client.get("/store-seconds")).json()
    finally:
        server.terminate()
        server.wait()
    millis = [latency * 1000 for latency in calm_latencies]
    store_p99 = percentile([latency * 1000 for latency in store], 0.99)
    return statistics.median(millis), percentile(millis, 0.99), store_p99, calm_statuses, noisy_statuses


async def main(seconds: float, runs: int) -> None:
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    auth = {"auth_issuer": issuer.issuer, "auth_audience": issuer.audience,
            "auth_jwks_url": f"{server.url}/.well-known/jwks.json"}
    try:
        results = {}
        for name, limits, noisy in SCENARIOS:
            outcomes = [await scenario(issuer, auth, limits, noisy, seconds) for _ in range(runs)]
            p50 = statistics.median(o[0] for o in outcomes)
            p99s = sorted(o[1] for o in outcomes)
            store_p99 = statistics.median(o[2] for o in outcomes)
            results[name] = (statistics.median(p99s), store_p99)
            calm, loud = outcomes[-1][3], outcomes[-1][4]
            print(f"{name}: calm p50={p50:.1f} ms p99={results[name][0]:.1f} ms (runs: "
                  f"{', '.join(f'{p:.1f}' for p in p99s)}), store p99={store_p99:.1f} ms (median of {runs} runs; "
                  f"last run: calm statuses {calm}, noisy statuses {loud or '-'})", flush=True)
        alone = results["calm tenant alone"]
        for name in list(results)[1:]:
            print(f"{name} / alone: p99 {results[name][0] / alone[0]:.2f}, store p99 "
                  f"{results[name][1] / alone[1]:.2f} (limits on: must be <= 1.20)")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "SETTINGS"), help=argparse.SUPPRESS)
    parser.add_argument("--flood", nargs=3, metavar=("URL", "TOKENS", "SECONDS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(int(arguments.serve[0]), json.loads(arguments.serve[1]))
    elif arguments.flood:
        asyncio.run(flood(arguments.flood[0], json.loads(arguments.flood[1]), float(arguments.flood[2])))
    else:
        asyncio.run(main(arguments.seconds, arguments.runs))
