"""What a service's routes solve per request: FastAPI runs a plain `def` dependency (or endpoint) in its
thread pool, a hop that cost every request ~0.15 ms of CPU on the metrics API (bench/README.md), so the
routes keep to coroutines."""

import inspect
from collections.abc import Iterable, Iterator

from fastapi import APIRouter
from fastapi.routing import APIRoute


def _calls(dependant) -> Iterator:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def runs_on_the_loop(call) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(getattr(call, "__call__", None))


def routes_of(*routers: APIRouter) -> list[APIRoute]:
    return [route for router in routers for route in router.routes if isinstance(route, APIRoute)]


def thread_pool_hops(route: APIRoute) -> list[str]:
    """The plain functions FastAPI would run in its thread pool for this route ([] when none)."""
    calls: Iterable = [*_calls(route.dependant), route.endpoint]
    return [getattr(call, "__qualname__", repr(call)) for call in calls if not runs_on_the_loop(call)]


def route_id(route: APIRoute) -> str:
    return f"{sorted(route.methods)[0]} {route.path}"
