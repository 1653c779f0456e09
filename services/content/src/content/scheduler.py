"""The publication scheduler: a periodic job of the worker.

Each pass publishes approved items whose `publish_at` has come and retires
published items whose `expires_at` has passed. Items that came due while the
worker was down are simply found on the first pass after start (catch-up). A change of
a campaign's objective or disclosure line re-announces its published items. Each
move is a write guarded by the item's status and version that carries its event,
so two schedulers, or a restart in the middle of a pass, never publish twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .service import ContentService

log = logging.getLogger(__name__)


def scheduler_job(service: ContentService, poll_seconds: float,
                  batch_size: int) -> Callable[[asyncio.Event], Awaitable[None]]:
    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            moved = 0
            try:
                moved = await run_pass(service, batch_size)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed; retrying")
            if moved < batch_size:  # a full batch means more are due: go on at once
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
                except TimeoutError:
                    pass

    return run


async def run_pass(service: ContentService, batch_size: int) -> int:
    published = await service.publish_due(service.now(), batch_size)
    retired = await service.retire_due(service.now(), batch_size)
    refreshed = await service.refresh_campaign_snapshots(service.now(), batch_size)
    if published or retired or refreshed:
        log.info("scheduler published %d, retired %d and re-announced %d items", published, retired, refreshed)
    return max(published, retired, refreshed)
