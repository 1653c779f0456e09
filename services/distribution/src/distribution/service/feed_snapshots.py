"""Per tenant, a snapshot of the published contents arranged for the feed (`FeedIndex`), kept a few seconds.

Why: every feed request needs all of the tenant's live contents. Reading them is a query on fields other
than `_id`, which FerretDB 1.x answers by scanning the collection, and arranging them costs in proportion
to their number; both would grow with the contents on every request. A snapshot costs that once per
`ttl_seconds` per tenant and process, and a page then costs about its own size (see `FeedIndex`).

What it changes: a content published, updated or retired shows in (or leaves) the feed up to `ttl_seconds`
plus one reload later. Expiry is still checked per request, what I already shared is read per request, and
preparing a share re-reads the content by id, so a retired content is never shareable. After `ttl_seconds`
the next request starts one reload in the background and is answered from the previous snapshot; only a
tenant's first request (or one after a failed reload) waits for the load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from ..models.projections import ContentView, FeedIndex

log = logging.getLogger(__name__)
TENANTS_KEPT = 512  # snapshots kept per process, least recently used dropped first


@dataclass
class _Snapshot:
    index: FeedIndex
    loaded_at: float


class FeedSnapshots:
    def __init__(self, load: Callable[[str, datetime], Awaitable[list[ContentView]]], ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self._load, self._ttl, self._clock = load, ttl_seconds, clock
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._loading: dict[str, asyncio.Task[_Snapshot]] = {}

    async def index(self, tenant: str, now: datetime) -> FeedIndex:
        if self._ttl <= 0:
            return FeedIndex(await self._load(tenant, now))
        snapshot = self._snapshots.get(tenant)
        if snapshot is None:
            return (await self._reload(tenant, now)).index
        self._snapshots.move_to_end(tenant)
        if self._clock() - snapshot.loaded_at >= self._ttl and tenant not in self._loading:
            self._start_reload(tenant, now)
        return snapshot.index

    def _start_reload(self, tenant: str, now: datetime) -> asyncio.Task[_Snapshot]:
        task = asyncio.get_running_loop().create_task(self._fetch(tenant, now))
        self._loading[tenant] = task
        task.add_done_callback(lambda done: self._settle(tenant, done))
        return task

    async def _reload(self, tenant: str, now: datetime) -> _Snapshot:
        task = self._loading.get(tenant) or self._start_reload(tenant, now)
        return await asyncio.shield(task)  # one load per tenant, however many requests wait for it

    async def _fetch(self, tenant: str, now: datetime) -> _Snapshot:
        started = self._clock()
        return _Snapshot(FeedIndex(await self._load(tenant, now)), started)

    def _settle(self, tenant: str, task: asyncio.Task[_Snapshot]) -> None:
        self._loading.pop(tenant, None)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("feed snapshot reload failed; the previous one is kept", exc_info=task.exception())
            return
        self._snapshots[tenant] = task.result()
        self._snapshots.move_to_end(tenant)
        while len(self._snapshots) > TENANTS_KEPT:
            self._snapshots.popitem(last=False)
