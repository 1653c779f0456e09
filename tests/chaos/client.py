"""HTTP calls that survive crashes: retried until the API gives a definite answer.

A request that never reached the API (connection refused: the process is down) is always retried. A request
whose answer was lost (the process died after reading it) is retried only where the API is idempotent; for a
tracked-link click, which is not, it is counted as *in doubt* instead.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from advocacy_common.dev_issuer import DevIssuer

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
ANSWER_LOST = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout, httpx.WriteError,
               httpx.WriteTimeout)


class InDoubt(Exception):
    """The request may or may not have been applied."""


class GaveUp(Exception):
    pass


@dataclass
class Api:
    urls: dict[str, str]
    issuer: DevIssuer
    deadline_seconds: float = 240.0
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    tokens: dict[tuple, str] = field(default_factory=dict)
    retries: Counter = field(default_factory=Counter)
    server_errors: Counter = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # label -> seconds of answered attempts

    async def __aenter__(self) -> Api:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.clients = {name: httpx.AsyncClient(base_url=url, timeout=30, limits=limits)
                        for name, url in self.urls.items()}
        return self

    async def __aexit__(self, *exc) -> None:
        for client in self.clients.values():
            await client.aclose()

    def auth(self, tenant: str, subject: str, *roles: str) -> dict[str, str]:
        key = (tenant, subject, roles)
        if key not in self.tokens:
            self.tokens[key] = self.issuer.mint(tenant=tenant, subject=subject, roles=list(roles), ttl_seconds=6 * 3600)
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    async def call(self, service: str, method: str, path: str, *, retry_lost: bool = True,
                   retry_status: tuple[int, ...] = (), label: str = "", **kwargs) -> httpx.Response:
        """The first answer that is not a 5xx (nor one of `retry_status`); 5xx and lost connections are retried
        until the deadline. `kwargs` may hold `body_factory`, called before every attempt (fresh signatures)."""
        factory = kwargs.pop("body_factory", None)
        label = label or f"{method} {path.split('/')[2] if path.count('/') > 1 else path}"
        deadline = time.monotonic() + self.deadline_seconds
        attempt = 0
        while True:
            attempt += 1
            if factory is not None:
                kwargs.update(factory())
            sent = time.monotonic()
            try:
                response = await self.clients[service].request(method, path, **kwargs)
                self.latencies.setdefault(label, []).append(time.monotonic() - sent)
            except NOT_SENT:
                pass
            except ANSWER_LOST:
                if not retry_lost:
                    raise InDoubt(label) from None
            else:
                if response.status_code == 429:  # a rate limit: what a polite client does, after Retry-After
                    self.retries[f"{label} after 429"] += 1
                    await asyncio.sleep(min(5.0, float(response.headers.get("retry-after", "1"))))
                    if time.monotonic() > deadline:
                        raise GaveUp(f"{label}: still rate limited after {self.deadline_seconds} s")
                    continue
                if response.status_code < 500 and response.status_code not in retry_status:
                    return response
                if response.status_code >= 500:
                    self.server_errors[f"{label} -> {response.status_code}"] += 1
            if time.monotonic() > deadline:
                raise GaveUp(f"{label}: no answer within {self.deadline_seconds} s")
            self.retries[label] += 1
            await asyncio.sleep(min(2.0, 0.1 * attempt) * (0.5 + random.random()))


def latency_line(latencies: dict[str, list[float]]) -> str:
    parts = []
    for label, seconds in sorted(latencies.items()):
        ordered = sorted(seconds)
        parts.append(f"{label} n={len(ordered)} p50={ordered[len(ordered) // 2] * 1000:.0f} ms "
                     f"p95={ordered[int(len(ordered) * 0.95)] * 1000:.0f} ms")
    return "; ".join(parts)
