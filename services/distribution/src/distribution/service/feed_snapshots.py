"""Per tenant, a snapshot of the published contents arranged for the feed (`FeedIndex`), kept a few seconds.

Why: every feed request needs all of the tenant's live contents. Reading them is a query on fields other
than `_id`, which FerretDB 1.x answers by scanning the collection, and arranging them costs in proportion
to their number; both would grow with the contents on every request. A snapshot costs that once per
`ttl_seconds` per tenant and process, and a page then costs about its own size (see `FeedIndex`).

What it changes: a content published, updated or retired shows in (or leaves) the feed up to `ttl_seconds`
plus one reload later while feeds are asked for (`RefreshingCache`: after `ttl_seconds` the next request
starts one reload in the background and is answered from the previous snapshot, for up to `STALE_SECONDS`
more; a tenant's first request, or one after a quiet while, waits for the load). Expiry is still checked
per request, what I already shared is read per request, and preparing a share re-reads the content by
id, so a retired content is never shareable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from advocacy_common.refreshing import RefreshingCache

from ..models.projections import ContentView, FeedIndex

STALE_SECONDS = 30.0
TENANTS_KEPT = 512  # snapshots kept per process, least recently used dropped first


class FeedSnapshots:
    def __init__(self, load: Callable[[str, datetime], Awaitable[list[ContentView]]], ttl_seconds: float):
        self._load = load
        self._cache: RefreshingCache[str, FeedIndex] = RefreshingCache(ttl_seconds, STALE_SECONDS, TENANTS_KEPT)

    async def index(self, tenant: str, now: datetime) -> FeedIndex:
        async def load() -> FeedIndex:
            return FeedIndex(await self._load(tenant, now))
        return await self._cache.get(tenant, load)
