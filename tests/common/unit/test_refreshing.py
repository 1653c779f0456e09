"""RefreshingCache: fresh values served, stale ones served while one reload runs, older ones reloaded first."""

import asyncio

import pytest

from advocacy_common.refreshing import RefreshingCache

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self):
        self.version, self.loads, self.fail = 0, 0, False
        self.gate = asyncio.Event()
        self.gate.set()

    async def load(self) -> int:
        self.loads += 1
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("down")
        return self.version


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fresh_then_stale_while_reloading_then_waits():
    clock, source = Clock(), Source()
    cache = RefreshingCache(fresh_seconds=1, stale_seconds=2, clock=clock)
    assert await cache.get("k", source.load) == 0 and source.loads == 1
    source.version = 1
    clock.now = 0.5
    assert await cache.get("k", source.load) == 0 and source.loads == 1  # fresh: no load
    clock.now = 1.5
    assert await cache.get("k", source.load) == 0  # stale: answered at once, one reload started
    await settle()
    assert source.loads == 2 and await cache.get("k", source.load) == 1
    source.version = 2
    clock.now = 10  # older than fresh + stale: never served, the request waits for the load
    assert await cache.get("k", source.load) == 2 and source.loads == 3


async def test_one_load_per_key_however_many_wait():
    clock, source = Clock(), Source()
    cache = RefreshingCache(fresh_seconds=1, clock=clock)
    source.gate.clear()
    waiting = [asyncio.create_task(cache.get("k", source.load)) for _ in range(20)]
    other = asyncio.create_task(cache.get("other", source.load))
    await settle()
    source.gate.set()
    assert await asyncio.gather(*waiting) == [0] * 20 and await other == 0
    assert source.loads == 2


async def test_a_failed_reload_keeps_the_value_within_its_window_and_raises_beyond():
    clock, source = Clock(), Source()
    cache = RefreshingCache(fresh_seconds=1, stale_seconds=2, clock=clock)
    await cache.get("k", source.load)
    source.fail, clock.now = True, 1.5
    assert await cache.get("k", source.load) == 0
    await settle()
    assert await cache.get("k", source.load) == 0  # the failure was logged, the value kept
    clock.now = 10
    with pytest.raises(RuntimeError):
        await cache.get("k", source.load)


async def test_zero_fresh_seconds_loads_every_time_and_capacity_bounds_the_keys():
    source = Source()
    uncached = RefreshingCache(fresh_seconds=0)
    await uncached.get("k", source.load)
    await uncached.get("k", source.load)
    assert source.loads == 2
    small = RefreshingCache(fresh_seconds=100, capacity=2)
    for key in ("a", "b", "c"):
        await small.get(key, source.load)
    await small.get("a", source.load)
    assert source.loads == 2 + 4  # "a" was dropped as the least recently used


async def test_a_discarded_key_is_loaded_afresh():
    cache, source = RefreshingCache(fresh_seconds=100), Source()
    assert await cache.get("k", source.load) == 0
    source.version = 1
    assert await cache.get("k", source.load) == 0  # fresh: kept
    cache.discard("k")
    cache.discard("never-kept")
    assert await cache.get("k", source.load) == 1 and source.loads == 2
