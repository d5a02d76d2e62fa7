"""The app's routes with their full path templates, whichever way FastAPI stores them.

FastAPI >= 0.16x keeps included routers as `_IncludedRouter`s whose routes carry only their own
path (without the include prefix) and puts that original route in `scope["route"]`; older
versions copy every route with the full path into `app.routes`. This module hides the
difference: metrics and logs need "/api/todos/{todo_id}", never "/todos/{todo_id}".
"""

import re
from collections.abc import Iterable, Iterator
from typing import Literal

import fastapi.routing
from fastapi import FastAPI
from fastapi.params import Form
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


class RouteMethods:
    """For a request path, the methods of the most specific route templates that match it.

    Only the templates with the fewest parameters count: `/api/todos/events` is its own
    resource, not a `/api/todos/{todo_id}` whose id happens to be "events".
    """

    def __init__(self, routes: Iterable[tuple[str, Iterable[str]]]) -> None:
        methods: dict[str, set[str]] = {}
        for template, route_methods in routes:
            methods.setdefault(template, set()).update(route_methods)
        self._fixed = {
            template: frozenset(found) for template, found in methods.items() if "{" not in template
        }
        self._patterns = sorted(
            (
                (template.count("{"), compile_path(template)[0], frozenset(found))
                for template, found in methods.items()
                if "{" in template
            ),
            key=lambda pattern: pattern[0],
        )

    def allowed(self, path: str) -> frozenset[str]:
        """The methods `path` is served with; empty if no route matches it."""
        if (fixed := self._fixed.get(path)) is not None:
            return fixed
        fewest: int | None = None
        allowed: frozenset[str] = frozenset()
        for params, regex, methods in self._patterns:
            if fewest is not None and params > fewest:
                break
            if regex.match(path):
                fewest = params
                allowed |= methods
        return allowed


def route_methods(app: FastAPI) -> RouteMethods:
    """The app's routes, by path template, with their methods."""
    return RouteMethods(
        (template, methods)
        for route, template in iter_routes(app)
        if (methods := getattr(route, "methods", None))
    )


BodyType = Literal["json", "form"]


class RouteBodies:
    """For a method and path, the body type of the route the router will pick, if any."""

    def __init__(self, routes: Iterable[tuple[str, Iterable[str], BodyType | None]]) -> None:
        # In routing order, by method: the router takes the first route that matches both.
        self._by_method: dict[str, list[tuple[re.Pattern[str], BodyType | None]]] = {}
        for template, methods, body in routes:
            regex = compile_path(template)[0]
            for method in methods:
                self._by_method.setdefault(method, []).append((regex, body))

    def expected(self, method: str, path: str) -> BodyType | None:
        """The body type the route for `method` and `path` takes: None if none, or no route."""
        for regex, body in self._by_method.get(method, ()):
            if regex.match(path):
                return body
        return None


def _body_type(route: BaseRoute) -> BodyType | None:
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return None
    return "form" if isinstance(body_field.field_info, Form) else "json"


def route_bodies(app: FastAPI) -> RouteBodies:
    """The app's routes with the body type each takes (FastAPI's body field)."""
    return RouteBodies(
        (template, methods, _body_type(route))
        for route, template in iter_routes(app)
        if (methods := getattr(route, "methods", None))
    )


def route_templates(app: FastAPI) -> dict[int, str]:
    """id(route object, as found in scope["route"]) -> its full path template."""
    return {id(route): path for route, path in iter_routes(app)}
