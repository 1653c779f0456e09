"""The metrics API's routes solve only coroutine dependencies: the hot routes (the overview, the series)
are answered from kept bytes in well under a millisecond, so a thread-pool hop per request would show."""

import pytest
from route_checks import route_id, routes_of, runs_on_the_loop, thread_pool_hops

from metrics.api import router, tickets_router

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("route", routes_of(router, tickets_router), ids=route_id)
def test_every_dependency_of_a_route_runs_on_the_event_loop(route):
    assert route.dependant.dependencies, "every route authenticates"
    assert thread_pool_hops(route) == []


def test_the_check_tells_a_thread_pool_dependency_apart():
    def plain() -> int:
        return 1

    async def awaited() -> int:
        return 1

    assert not runs_on_the_loop(plain) and runs_on_the_loop(awaited)
