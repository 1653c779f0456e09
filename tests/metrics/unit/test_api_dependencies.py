"""The metrics API's routes solve only coroutine dependencies: FastAPI runs a plain `def` dependency in its
thread pool, a hop that cost every request ~0.15 ms of CPU (bench/README.md), and the hot routes (the
overview, the series) are answered from kept bytes in well under a millisecond otherwise."""

import inspect

import pytest
from fastapi.routing import APIRoute

from metrics.api import router, tickets_router

pytestmark = pytest.mark.unit


def _calls(dependant):
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _runs_on_the_loop(call) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(getattr(call, "__call__", None))


@pytest.mark.parametrize("route", [r for r in (*router.routes, *tickets_router.routes) if isinstance(r, APIRoute)],
                         ids=lambda route: f"{sorted(route.methods)[0]} {route.path}")
def test_every_dependency_of_a_route_runs_on_the_event_loop(route):
    calls = list(_calls(route.dependant))
    assert calls, "every route authenticates"
    assert [call for call in calls if not _runs_on_the_loop(call)] == []
    assert inspect.iscoroutinefunction(route.endpoint)


def test_the_check_tells_a_thread_pool_dependency_apart():
    def plain() -> int:
        return 1

    async def awaited() -> int:
        return 1

    assert not _runs_on_the_loop(plain) and _runs_on_the_loop(awaited)
