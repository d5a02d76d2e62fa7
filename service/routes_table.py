"""The app's routes with their full path templates, whichever way FastAPI stores them.

FastAPI >= 0.16x keeps included routers as `_IncludedRouter`s whose routes carry only their own
path (without the include prefix) and puts that original route in `scope["route"]`; older
versions copy every route with the full path into `app.routes`. This module hides the
difference: metrics and logs need "/api/todos/{todo_id}", never "/todos/{todo_id}".
"""

from collections.abc import Iterator

import fastapi.routing
from fastapi import FastAPI
from starlette.routing import BaseRoute, compile_path


def iter_routes(app: FastAPI) -> Iterator[tuple[BaseRoute, str]]:
    """Every route of the app with its full path template."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:  # older FastAPI: app.routes is already flat
        for route in app.routes:
            if path := getattr(route, "path", None):
                yield route, path
        return
    for context in iter_contexts(app.routes):
        if path := context.path_format:
            yield context.original_route, path


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method the routes documented for `path` serve (for a 405's Allow header).

    Only the most specific templates count: `/api/todos/events` is its own resource, not a
    `/api/todos/{todo_id}` whose id happens to be "events".
    """
    matches: list[tuple[int, BaseRoute]] = []
    for route, template in iter_routes(app):
        regex, _, _ = compile_path(template)
        if regex.match(path):
            matches.append((template.count("{"), route))
    fewest_params = min((params for params, _ in matches), default=0)
    methods: set[str] = set()
    for params, route in matches:
        if params == fewest_params:
            methods |= getattr(route, "methods", None) or set()
    return methods


def route_templates(app: FastAPI) -> dict[int, str]:
    """id(route object, as found in scope["route"]) -> its full path template."""
    return {id(route): path for route, path in iter_routes(app)}
