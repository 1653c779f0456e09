"""Rate limits on writes, per tenant, per token subject and per webhook source (the `limits` library).

Checked once the bearer token is verified (`auth.authenticate` calls `check`), so the keys are the
verified tenant and subject, never something a client could invent; a refused write never reaches
its endpoint. The moving window counts in the storage named by `rate_limit_storage_uri`: with the
default `memory://` each replica counts on its own (N replicas admit up to N times the limit);
`redis://host` (with the `redis` extra of `limits`) shares one count between replicas.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from .errors import Problem
from .settings import ServiceSettings

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def too_many_requests(retry_after: int, scope: str) -> Problem:
    return Problem(429, "Too Many Requests", f"Too many writes for this {scope}; retry in {retry_after} s.",
                   headers={"Retry-After": str(retry_after)})


@dataclass(frozen=True)
class Quota:
    scope: str  # what the caller is told was exceeded: subject, tenant or source
    items: tuple[RateLimitItem, ...]


class RateLimiter:
    def __init__(self, subject: str, tenant: str, source: str, source_params: list[str],
                 storage_uri: str = "memory://"):
        uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
        self._window = MovingWindowRateLimiter(storage_from_string(uri))
        self.subject = Quota("subject", tuple(parse_many(subject)))
        self.tenant = Quota("tenant", tuple(parse_many(tenant)))
        self.source = Quota("source", tuple(parse_many(source)))
        self.source_params = tuple(source_params)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RateLimiter:
        return cls(settings.rate_limit_subject_writes, settings.rate_limit_tenant_writes,
                   settings.rate_limit_source_writes, settings.rate_limit_source_params,
                   settings.rate_limit_storage_uri)

    async def check(self, request: Request, tenant: str, subject: str) -> None:
        """429 with Retry-After when this write exceeds a quota; reads are not limited."""
        if request.method not in WRITE_METHODS:
            return
        spends = [(self.subject, (tenant, subject)), (self.tenant, (tenant,))]
        spends += [(self.source, (tenant, str(request.path_params[param])))
                   for param in self.source_params if param in request.path_params]
        await self.spend(spends)

    async def check_source(self, tenant: str, source: str) -> None:
        """The quota of a webhook caller; call it directly for a webhook verified by signature only."""
        await self.spend([(self.source, (tenant, source))])

    async def spend(self, spends: list[tuple[Quota, tuple[str, ...]]]) -> None:
        # Every quota is tested before any is spent: a write refused for its subject costs its tenant nothing.
        for quota, key in spends:
            for item in quota.items:
                if not await self._window.test(item, quota.scope, *key):
                    reset_at, _ = await self._window.get_window_stats(item, quota.scope, *key)
                    raise too_many_requests(max(1, math.ceil(reset_at - time.time())), quota.scope)
        for quota, key in spends:
            for item in quota.items:
                await self._window.hit(item, quota.scope, *key)
