"""Every dependency of every route runs on the event loop, not in the thread pool."""

import inspect
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.routes_table import iter_routes


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def test_every_dependency_is_async(app: FastAPI) -> None:
    # FastAPI runs a plain `def` dependency in the thread pool: one thread hop per request for
    # work that never blocks (a measured ~13% of GET /api/me's CPU, see bench/REPORT.md).
    routes = sum(isinstance(route, APIRoute) for route, _ in iter_routes(app))
    sync = {
        f"{path}: {getattr(dep.call, '__qualname__', dep.call)}"
        for route, path in iter_routes(app)
        if isinstance(route, APIRoute)
        for dep in _dependencies(route.dependant)
        if dep.call is not None
        and not inspect.iscoroutinefunction(dep.call)
        and not inspect.iscoroutinefunction(type(dep.call).__call__)  # a callable instance
    }
    assert routes > 10
    assert sync == set()
