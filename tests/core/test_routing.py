"""Routing edges: exact paths (no trailing-slash redirects) and 405 for fixed paths."""

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from starlette.routing import compile_path

from service.app import create_app
from service.config import Settings
from service.core.routes_table import iter_routes
from tests.mongomock_compat import mock_database
from tests.utils import app_client

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def routed_app(settings: Settings) -> FastAPI:
    return create_app(settings, database=mock_database("routing"))


@pytest.fixture
async def http(routed_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with app_client(routed_app) as client:
        yield client


def sample_path(template: str) -> str:
    """The template with every parameter filled in (a valid ObjectId, say)."""
    return re.sub(r"{[^}]+}", "0123456789abcdef01234567", template)


def methods_by_template(app: FastAPI) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for route, template in iter_routes(app):
        found.setdefault(template, set()).update(getattr(route, "methods", None) or ())
    return found


def fixed_siblings(app: FastAPI) -> dict[str, set[str]]:
    """Templates whose paths a template with more parameters also matches, with the methods
    only that sibling serves (the requests that used to reach the sibling)."""
    templates = methods_by_template(app)
    siblings: dict[str, set[str]] = {}
    for template, methods in templates.items():
        path = sample_path(template)
        for other, other_methods in templates.items():
            more_params = other.count("{") > template.count("{")
            if more_params and compile_path(other)[0].match(path):
                siblings.setdefault(template, set()).update(other_methods - methods)
    return siblings


async def test_a_fixed_path_beside_a_parameter_answers_405_for_its_siblings_methods(
    routed_app: FastAPI, http: AsyncClient
) -> None:
    siblings = fixed_siblings(routed_app)
    templates = methods_by_template(routed_app)
    assert {"/api/todos/clear-completed", "/api/todos/events"} <= set(siblings)
    for template, methods in siblings.items():
        for method in sorted(methods):
            response = await http.request(method, sample_path(template))
            assert response.status_code == 405, (method, template, response.text)
            assert response.headers["Allow"] == ", ".join(sorted(templates[template]))
            assert response.json() == {"detail": "Method Not Allowed"}


async def test_every_path_answers_405_with_allow_for_methods_it_does_not_serve(
    routed_app: FastAPI, http: AsyncClient
) -> None:
    for template, methods in methods_by_template(routed_app).items():
        for method in METHODS:
            if method in methods:
                continue
            response = await http.request(method, sample_path(template))
            assert response.status_code == 405, (method, template, response.text)
            assert response.headers["Allow"] == ", ".join(sorted(methods))


@pytest.mark.parametrize("path", ["/api/todos/", "/api/health/", "/api/me/"])
async def test_a_trailing_slash_is_not_found_never_a_redirect(http: AsyncClient, path: str) -> None:
    response = await http.get(path, headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 404
    assert "location" not in response.headers
