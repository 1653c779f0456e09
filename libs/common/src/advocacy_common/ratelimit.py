"""Rate limits on writes, per tenant, per token subject and per webhook source (the `limits` library),
and a cap on the writes one tenant has in progress at once.

Two checks, so a burst costs as little as possible and no one can spend another's quota:

* `refuse_early`, called by the hardening middleware before the body is read and before the JWT is
  verified, finds the bucket from the claims the bearer token *says* it carries (decoded, not
  verified: base64 and JSON, no signature check) and only *tests* it. A write whose tenant or
  subject is already over quota is answered 429 at once: the refusal costs no signature check, no
  body read, no framework. A forged token can at most be refused 429 where it would have been
  refused 401; it spends nothing.
* `check`, called by `auth.authenticate` once the token is verified, tests and *spends* the quotas
  with the verified tenant and subject (and the webhook source from the route), then waits for one
  of the tenant's `tenant_concurrency` in-progress slots (released by the middleware when the
  response is over); a write that waits longer than `slot_wait_seconds` is refused 429.

Why the in-progress cap: a moving window admits a tenant's whole quota for the next second at once;
without a cap those writes queue in the database ahead of every other tenant's (measured in
bench/ratelimit_bench.py: another tenant's p99 x10). With it, a burst waits in its own tenant's
queue, and the database sees at most `tenant_concurrency` writes of any one tenant. The moving window counts in the storage named by `rate_limit_storage_uri`: with
the default `memory://` each replica counts on its own (N replicas admit up to N times the limit);
`redis://host` (with the `redis` extra of `limits`) shares one count between replicas. The
in-progress cap is always per replica.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from .errors import Problem
from .settings import ServiceSettings

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# In the ASGI scope of a request: the tenant whose in-progress slot it holds, released by the middleware.
SLOT_KEY = "advocacy.write_slot"


def too_many_requests(retry_after: int, scope: str) -> Problem:
    return Problem(429, "Too Many Requests", f"Too many writes for this {scope}; retry in {retry_after} s.",
                   headers={"Retry-After": str(retry_after)})


def too_many_in_progress() -> Problem:
    return Problem(429, "Too Many Requests", "Too many writes of this tenant are waiting; retry in 1 s.",
                   headers={"Retry-After": "1"})


def claimed_identity(authorization: str) -> tuple[str, str] | None:
    """(tenant, subject) that a bearer token claims, its signature NOT checked: a limiter bucket, nothing more."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or len(token) > 8192:
        return None
    try:
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
    except (jwt.InvalidTokenError, ValueError, TypeError):
        return None
    tenant, subject = claims.get("tenant"), claims.get("sub")
    if not isinstance(tenant, str) or not tenant or subject is None:
        return None
    return tenant, str(subject)


@dataclass(frozen=True)
class Quota:
    scope: str  # what the caller is told was exceeded: subject, tenant or source
    items: tuple[RateLimitItem, ...]


class RateLimiter:
    def __init__(self, subject: str, tenant: str, source: str, source_params: list[str],
                 storage_uri: str = "memory://", tenant_concurrency: int = 0, slot_wait_seconds: float = 10.0):
        uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
        self._window = MovingWindowRateLimiter(storage_from_string(uri))
        self.subject = Quota("subject", tuple(parse_many(subject)))
        self.tenant = Quota("tenant", tuple(parse_many(tenant)))
        self.source = Quota("source", tuple(parse_many(source)))
        self.source_params = tuple(source_params)
        self.tenant_concurrency = tenant_concurrency  # 0: no cap
        self.slot_wait_seconds = slot_wait_seconds
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._holders: Counter[str] = Counter()  # writes holding or waiting for a slot, per tenant

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RateLimiter:
        return cls(settings.rate_limit_subject_writes, settings.rate_limit_tenant_writes,
                   settings.rate_limit_source_writes, settings.rate_limit_source_params,
                   settings.rate_limit_storage_uri, settings.rate_limit_tenant_concurrent_writes,
                   settings.rate_limit_slot_wait_seconds)

    async def refuse_early(self, method: str, authorization: str) -> Problem | None:
        """The 429 for a write that would be refused anyway, judged before verification (tests, spends nothing)."""
        if method not in WRITE_METHODS:
            return None
        claimed = claimed_identity(authorization)
        if claimed is None:
            return None  # verification answers it
        tenant, subject = claimed
        return await self._refusal([(self.subject, (tenant, subject)), (self.tenant, (tenant,))])

    async def check(self, request: Request, tenant: str, subject: str) -> None:
        """429 with Retry-After when this write exceeds a quota; reads are not limited. Spends once per request."""
        if request.method not in WRITE_METHODS or SLOT_KEY in request.scope:
            return
        spends = [(self.subject, (tenant, subject)), (self.tenant, (tenant,))]
        spends += [(self.source, (tenant, str(request.path_params[param])))
                   for param in self.source_params if param in request.path_params]
        await self.spend(spends)
        if self.tenant_concurrency:
            await self._take_slot(tenant)
            request.scope[SLOT_KEY] = tenant

    async def _take_slot(self, tenant: str) -> None:
        gate = self._slots.setdefault(tenant, asyncio.Semaphore(self.tenant_concurrency))
        self._holders[tenant] += 1
        try:
            await asyncio.wait_for(gate.acquire(), self.slot_wait_seconds)
        except TimeoutError:
            self._drop_holder(tenant)
            raise too_many_in_progress() from None
        except BaseException:
            self._drop_holder(tenant)
            raise

    def release(self, scope: MutableMapping[str, Any]) -> None:
        """Give back the in-progress slot a request took (the middleware calls it when the request is over)."""
        tenant = scope.pop(SLOT_KEY, None)
        if tenant is not None:
            self._slots[tenant].release()
            self._drop_holder(tenant)

    def _drop_holder(self, tenant: str) -> None:
        self._holders[tenant] -= 1
        if self._holders[tenant] <= 0:  # nobody holds or waits: forget the tenant's gate
            del self._holders[tenant]
            del self._slots[tenant]

    async def check_source(self, tenant: str, source: str) -> None:
        """The quota of a webhook caller; call it directly for a webhook verified by signature only."""
        await self.spend([(self.source, (tenant, source))])

    async def spend(self, spends: list[tuple[Quota, tuple[str, ...]]]) -> None:
        # Every quota is tested before any is spent: a write refused for its subject costs its tenant nothing.
        refusal = await self._refusal(spends)
        if refusal is not None:
            raise refusal
        for quota, key in spends:
            for item in quota.items:
                await self._window.hit(item, quota.scope, *key)

    async def _refusal(self, spends: list[tuple[Quota, tuple[str, ...]]]) -> Problem | None:
        for quota, key in spends:
            for item in quota.items:
                if not await self._window.test(item, quota.scope, *key):
                    reset_at, _ = await self._window.get_window_stats(item, quota.scope, *key)
                    return too_many_requests(max(1, math.ceil(reset_at - time.time())), quota.scope)
        return None
