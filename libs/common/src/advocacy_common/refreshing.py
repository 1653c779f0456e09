"""A small in-process cache for read models that are expensive to load and fine to serve a moment old.

A value is fresh for `fresh_seconds`. For `stale_seconds` after that, a request still gets it at once,
and starts one reload in the background; an older value is not served: the request waits for its reload.
So a value is never older than `fresh_seconds + stale_seconds` plus one load, a steady stream of requests
never waits, and a key nobody asked for in a while is loaded afresh. One load per key at a time, however
many requests wait for it; a failed reload keeps the previous value (within its window) and is logged.
At most `capacity` keys are kept, the least recently used dropped first. Per process, not shared.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
log = logging.getLogger(__name__)


@dataclass
class _Entry(Generic[V]):
    value: V
    loaded_at: float  # when its load started: the age counts from what the load could see


class RefreshingCache(Generic[K, V]):
    def __init__(self, fresh_seconds: float, stale_seconds: float = 0.0, capacity: int = 512,
                 clock: Callable[[], float] = time.monotonic):
        self.fresh_seconds, self.stale_seconds, self.capacity, self._clock = (
            fresh_seconds, stale_seconds, capacity, clock)
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._loading: dict[K, asyncio.Task[_Entry[V]]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        if self.fresh_seconds <= 0:
            return await load()
        entry = self._entries.get(key)
        age = self._clock() - entry.loaded_at if entry is not None else None
        if entry is not None and age is not None and age < self.fresh_seconds:
            self._entries.move_to_end(key)
            return entry.value
        if entry is not None and age is not None and age < self.fresh_seconds + self.stale_seconds:
            self._entries.move_to_end(key)
            if key not in self._loading:
                self._start(key, load)
            return entry.value
        task = self._loading.get(key) or self._start(key, load)
        return (await asyncio.shield(task)).value

    def now(self) -> float:
        """The cache's clock (what its windows are measured with)."""
        return self._clock()

    def peek(self, key: K) -> V | None:
        """The value kept for `key` whatever its age (None if none): what a load may start from."""
        entry = self._entries.get(key)
        return entry.value if entry is not None else None

    def discard(self, key: K) -> None:
        """Forget a key's value now (e.g. one that holds what an erasure must remove); a load under way stays."""
        self._entries.pop(key, None)

    def _start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Task[_Entry[V]]:
        async def fetch() -> _Entry[V]:
            started = self._clock()
            return _Entry(await load(), started)

        task = asyncio.get_running_loop().create_task(fetch())
        self._loading[key] = task
        task.add_done_callback(lambda done: self._settle(key, done))
        return task

    def _settle(self, key: K, task: asyncio.Task[_Entry[V]]) -> None:
        self._loading.pop(key, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning("reload failed; the previous value is kept within its window", exc_info=error)
            return
        self._entries[key] = task.result()
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
