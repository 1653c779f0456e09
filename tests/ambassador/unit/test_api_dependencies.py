"""The ambassador API's routes solve only coroutine dependencies (no thread-pool hop per request)."""

import pytest
from route_checks import route_id, routes_of, thread_pool_hops

from ambassador import api, api_admin, api_directory, api_programme

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("route", routes_of(api.router, api_admin.router, api_directory.router,
                                            api_directory.scim_router, api_programme.router), ids=route_id)
def test_every_dependency_of_a_route_runs_on_the_event_loop(route):
    assert thread_pool_hops(route) == []
