"""The event loop handed back during a long computation of the api, every couple of milliseconds.

A kept report is recomputed in the background while requests are answered from the previous one
(`RefreshingCache`), but on the same event loop: its CPU between two awaits (decoding a period's
activity, a series' 90 points, a tenant's ambassadors) held every other request. Measured on benchmark 4
before this: blocks of 20-30 ms (overview) and 50-85 ms (90-day series) once per recomputation, the
tail at one client (p99 tens of ms against a p50 of 2-4 ms). Reads of a cursor's buffered batch do not
yield by themselves: `async for` over documents already received never reaches the loop.
"""

from __future__ import annotations

import asyncio
import time

TURN_SECONDS = 0.002  # longest stretch a computation keeps the loop; a yield costs ~10 us


class Turns:
    """One per computation: `await turns.take()` in its loops yields once its turn has lasted long enough."""

    def __init__(self, seconds: float = TURN_SECONDS):
        self.seconds = seconds
        self._since = time.perf_counter()

    async def take(self) -> None:
        if time.perf_counter() - self._since >= self.seconds:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
