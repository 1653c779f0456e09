"""Does one tenant's burst of writes raise another tenant's latency? (per-tenant write rate limits)

    uv run python bench/ratelimit_bench.py [--seconds 10] [--runs 3]

An app made by `create_service_app` (so the whole hardening stack runs: body scan, JWT, rate limiter)
with one write endpoint over a simulated store that, like our FerretDB proxy, takes a few writes at
a time (2 slots, 30 ms each). A calm tenant writes at a steady pace while a noisy tenant sends five
times its quota at a fixed rate. Three scenarios, each the median of `--runs` runs: the calm tenant alone; with the
noisy burst under the default-style limits; and with the burst but limits set out of reach, to show
what the limiter prevents. The goal: the calm tenant's p99 with the burst within 20 % of its p99
alone. Client and server share one event loop here, so on a busy machine the CPU spent refusing the
burst (JWT verification, framework) shows in the calm tenant's figures; "store p99" is the calm
tenant's wait for the store plus its write, measured inside the app.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from fastapi import Depends
from httpx import ASGITransport, AsyncClient

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
# Quotas sized to the store: a tenant at its quota takes a quarter of the store's ~66 writes/s.
LIMITED = {"rate_limit_tenant_writes": "16/second", "rate_limit_subject_writes": "5/second"}
UNLIMITED = {"rate_limit_tenant_writes": "1000000/second", "rate_limit_subject_writes": "1000000/second"}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def build_app(auth: dict[str, str], limits: dict[str, str]):
    app = create_service_app(ServiceSettings(service_name="ratelimit-bench", **auth, **limits),
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

    return app


async def writer(client: AsyncClient, headers: dict[str, str], pause: float, until: float,
                 latencies: list[float], statuses: dict[int, int]) -> None:
    """Closed loop, as a well-behaved client: the next write after the answer and a pause."""
    while time.monotonic() < until:
        started = time.perf_counter()
        response = await client.post("/v1/notes", json={"text": "hello"}, headers=headers)
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        await asyncio.sleep(pause)


async def flooder(client: AsyncClient, headers: dict[str, str], pause: float, until: float,
                  statuses: dict[int, int]) -> None:
    """Open loop, as an attacker or a runaway script: a new write every `pause`, answered or not."""

    async def one() -> None:
        response = await client.post("/v1/notes", json={"text": "spam"}, headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    in_flight = []
    while time.monotonic() < until:
        in_flight.append(asyncio.create_task(one()))
        await asyncio.sleep(pause)
    await asyncio.gather(*in_flight)


async def scenario(issuer: DevIssuer, auth: dict[str, str], limits: dict[str, str], noisy: bool,
                   seconds: float) -> tuple[float, float, float, dict[int, int], dict[int, int]]:
    app = build_app(auth, limits)
    calm_latencies: list[float] = []
    calm_statuses: dict[int, int] = {}
    noisy_statuses: dict[int, int] = {}

    def token(tenant: str, subject: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.mint(tenant=tenant, subject=subject, roles=['editor'])}"}

    async with AsyncClient(transport=ASGITransport(app), base_url="http://bench") as client:
        await client.post("/v1/notes", json={}, headers=token("warm-up", "w"))  # JWKS fetched once
        until = time.monotonic() + seconds
        tasks = [writer(client, token("calm", f"c{i}"), CALM_PAUSE_SECONDS, until, calm_latencies, calm_statuses)
                 for i in range(CALM_SUBJECTS)]
        if noisy:
            tasks += [flooder(client, token("noisy", f"n{i}"), NOISY_PAUSE_SECONDS, until, noisy_statuses)
                      for i in range(NOISY_SUBJECTS)]
        await asyncio.gather(*tasks)
    millis = [latency * 1000 for latency in calm_latencies]
    store_p99 = percentile([latency * 1000 for latency in app.state.store_seconds], 0.99)
    return statistics.median(millis), percentile(millis, 0.99), store_p99, calm_statuses, noisy_statuses


async def main(seconds: float, runs: int) -> None:
    server = JwksServer([]).start()
    issuer = DevIssuer.generate(issuer=server.url)
    server.issuers.append(issuer)
    auth = {"auth_issuer": issuer.issuer, "auth_audience": issuer.audience,
            "auth_jwks_url": f"{server.url}/.well-known/jwks.json"}
    try:
        results = {}
        for name, limits, noisy in (("calm tenant alone", LIMITED, False),
                                    ("with a noisy tenant, limits on", LIMITED, True),
                                    ("with a noisy tenant, limits out of reach", UNLIMITED, True)):
            outcomes = [await scenario(issuer, auth, limits, noisy, seconds) for _ in range(runs)]
            p50 = statistics.median(o[0] for o in outcomes)
            p99 = statistics.median(o[1] for o in outcomes)
            store_p99 = statistics.median(o[2] for o in outcomes)
            results[name] = (p99, store_p99)
            calm, loud = outcomes[-1][3], outcomes[-1][4]
            print(f"{name}: calm p50={p50:.1f} ms p99={p99:.1f} ms, store p99={store_p99:.1f} ms (median of "
                  f"{runs} runs; last run: calm statuses {calm}, noisy statuses {loud or '-'})")
        alone = results["calm tenant alone"]
        for name in ("with a noisy tenant, limits on", "with a noisy tenant, limits out of reach"):
            print(f"{name} / alone: p99 {results[name][0] / alone[0]:.2f}, store p99 "
                  f"{results[name][1] / alone[1]:.2f} (limits on: must be <= 1.20)")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.runs))
