"""A body must come in the type its route takes: 415 on JSON routes, a clear 422 on forms."""

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, params
from httpx import AsyncClient

from service.app import create_app
from service.config import Settings
from service.core.routes_table import iter_routes
from tests.mongomock_compat import mock_database
from tests.utils import app_client

JSON_BODY = b'{"text": "x"}'


@pytest.fixture
def routed_app(settings: Settings) -> FastAPI:
    return create_app(
        settings.model_copy(update={"docs_enabled": True}), database=mock_database("types")
    )


@pytest.fixture
async def http(routed_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with app_client(routed_app) as client:
        yield client


def body_routes(app: FastAPI, *, form: bool) -> list[tuple[str, str]]:
    """(method, sample path) of every route taking a JSON body, or a form body."""
    found = []
    for route, template in iter_routes(app):
        body_field = getattr(route, "body_field", None)
        if body_field is None or isinstance(body_field.field_info, params.Form) != form:
            continue
        path = re.sub(r"{[^}]+}", "0123456789abcdef01234567", template)
        found += [(method, path) for method in sorted(getattr(route, "methods", ()))]
    return found


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_on_a_json_route_is_415(
    routed_app: FastAPI, http: AsyncClient, content_type: str | None
) -> None:
    routes = body_routes(routed_app, form=False)
    assert ("POST", "/api/todos") in routes
    headers = {"Content-Type": content_type} if content_type else {}
    for method, path in routes:
        response = await http.request(method, path, content=JSON_BODY, headers=headers)
        if content_type is None:
            assert "content-type" not in response.request.headers
        assert response.status_code == 415, (method, path, response.text)
        assert response.json()["detail"].startswith("Unsupported media type")


async def test_json_types_pass_the_check(http: AsyncClient) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8"):
        response = await http.post(
            "/api/todos", content=JSON_BODY, headers={"Content-Type": content_type}
        )
        assert response.status_code == 401  # on to authentication


async def test_json_sent_to_a_form_route_says_it_takes_a_form(
    routed_app: FastAPI, http: AsyncClient
) -> None:
    routes = body_routes(routed_app, form=True)
    assert routes == [("POST", "/api/token")]
    for content_type in ("application/json", "text/plain"):
        response = await http.post(
            "/api/token",
            content=b'{"username": "a@example.com", "password": "secret password"}',
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["type"] == "form_expected"
        assert "application/x-www-form-urlencoded" in error["msg"]


async def test_openapi_documents_the_415_for_json_bodies(http: AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    checked = 0
    for operations in schema["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                assert "415" in operation["responses"], operation["operationId"]
                checked += 1
            else:
                assert "415" not in operation["responses"], operation["operationId"]
    assert checked >= 5
