"""Per tenant, what every feed of the tenant shares: its contents arranged for the feed (`FeedIndex`) and
its current charter, checked every `ttl_seconds` and listed again only when a content changed.

Why: every feed request needs all of the tenant's live contents. Listing them is a query on fields other
than `_id`, which FerretDB 1.x answers by scanning and decoding the collection (2.3 s for 5,000 contents
under load), and arranging them costs in proportion to their number. The content projection counts the
tenant's content writes in one small document (`ContentProjection.changes`); a snapshot remembers the
count it listed after, so a check is two reads by `_id` (that count and the charter) and the contents
are listed again only when the count moved. Published-but-scheduled contents are in the snapshot too:
each page checks publication and expiry against the request's time (`ContentView.is_active`), so a
content whose time comes shows without any write.

What it changes: a content published, updated or retired, or a new charter, shows in the feed up to
`ttl_seconds` plus one check (and, after a content change, one listing) later while feeds are asked for;
while the contents keep changing, they are listed at most every `LISTING_GAP_SECONDS`, so a content
change may take that long plus one listing
(`RefreshingCache`: after `ttl_seconds` the next request starts the check in the background and is
answered from the previous snapshot, for up to `STALE_SECONDS` more; a tenant's first request, or one
after a quiet while, waits for it). With `ttl_seconds` 0 every request checks: exact. What I already
shared and my profile are read per request, and preparing a share re-reads the content and the charter
by id, so a retired content is never shareable and a charter to accept is never skipped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from advocacy_common.refreshing import RefreshingCache

from ..models.projections import CharterView, FeedIndex
from ..ports import CharterProjection, ContentProjection

STALE_SECONDS = 30.0
TENANTS_KEPT = 512  # snapshots kept per process, least recently used dropped first
# While a tenant's contents keep changing (a campaign published in bulk), list them at most this often:
# each listing is a scan of the tenant's contents on FerretDB.
LISTING_GAP_SECONDS = 5.0


@dataclass(frozen=True)
class TenantFeed:
    index: FeedIndex
    charter: CharterView
    changes: int  # the tenant's content change count read before the index's contents were listed
    listed_at: float  # when (process clock) they were listed


class FeedSnapshots:
    def __init__(self, contents: ContentProjection, charters: CharterProjection, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self._contents, self._charters, self._clock = contents, charters, clock
        # With checks on every request (0), every change is listed at once: exact, for tests and small setups.
        self._listing_gap = LISTING_GAP_SECONDS if ttl_seconds > 0 else 0.0
        self._cache: RefreshingCache[str, TenantFeed] = RefreshingCache(ttl_seconds, STALE_SECONDS, TENANTS_KEPT)
        self._listed: OrderedDict[str, TenantFeed] = OrderedDict()  # the last listing per tenant, to reuse

    async def of(self, tenant: str) -> TenantFeed:
        return await self._cache.get(tenant, lambda: self._check(tenant))

    async def _check(self, tenant: str) -> TenantFeed:
        # The count first: a content written after it moves it on, so the next check lists again.
        changes = await self._contents.changes(tenant)
        charter = await self._charters.current(tenant)
        last, now = self._listed.get(tenant), self._clock()
        if last is not None and (last.changes == changes or now - last.listed_at < self._listing_gap):
            self._listed.move_to_end(tenant)
            # The count it was listed after stays: a change not listed yet is listed at a later check.
            return TenantFeed(last.index, charter, last.changes, last.listed_at)
        feed = TenantFeed(FeedIndex(await self._contents.list_unretired(tenant)), charter, changes, now)
        self._listed[tenant] = feed
        self._listed.move_to_end(tenant)
        while len(self._listed) > TENANTS_KEPT:
            self._listed.popitem(last=False)
        return feed
