"""The publication scheduler's clock: a periodic job of the worker.

Each pass (`ContentService.run_schedule`) publishes approved items whose
`publish_at` has come, retires published items whose `expires_at` has passed
and re-announces the published items of changed campaigns. Items that came due
while the worker was down are simply found on the first pass after start
(catch-up). This module only decides when the next pass runs.
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
                moved = await service.run_schedule(batch_size)
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
