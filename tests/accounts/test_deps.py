"""Dependencies: every one runs on the event loop; which 401 a bearer token gets."""

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from httpx import AsyncClient

from service.core.routes_table import iter_routes
from tests.conftest import TEST_SECRET_KEY
from tests.utils import create_account


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


@pytest.mark.mock_only
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


# ---- which 401 a bearer token gets ----

GENERIC_401 = {"detail": "Could not validate credentials"}


def expired_copy(token: str, key: str = TEST_SECRET_KEY, **overrides: Any) -> str:
    """`token` with the same session and user, but expired an hour ago (and `overrides`)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    now = datetime.now(UTC)
    claims |= {"iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)} | overrides
    return jwt.encode(claims, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.mock_only
async def test_an_expired_token_answers_token_expired(client: AsyncClient) -> None:
    account = await create_account(client)
    response = await client.get("/api/me", headers=bearer(expired_copy(account.token)))
    assert response.status_code == 401
    assert response.json() == {"detail": "Token expired"}
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    ("key", "overrides"),
    [
        pytest.param("another-key-of-sufficient-length-0123456789", {}, id="wrong-key"),
        pytest.param(TEST_SECRET_KEY, {"aud": "someone-else"}, id="wrong-audience"),
        pytest.param(TEST_SECRET_KEY, {"typ": "refresh"}, id="not-an-access-token"),
        pytest.param(TEST_SECRET_KEY, {"sid": 5}, id="bad-sid"),
    ],
)
@pytest.mark.mock_only
async def test_an_expired_token_that_is_bad_otherwise_gets_the_generic_401(
    client: AsyncClient, key: str, overrides: dict[str, Any]
) -> None:
    # Refreshing can't help with these: they get no hint that it might.
    account = await create_account(client)
    token = expired_copy(account.token, key, **overrides)
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == GENERIC_401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_live_token_of_an_ended_session_gets_the_generic_401(
    client: AsyncClient,
) -> None:
    account = await create_account(client)
    assert (await client.post("/api/logout", headers=account.headers)).status_code == 204
    response = await client.get("/api/me", headers=account.headers)
    assert response.status_code == 401
    assert response.json() == GENERIC_401


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/todos/events/ticket"), ("GET", "/api/todos/events")],
)
@pytest.mark.mock_only
async def test_the_change_feed_paths_answer_token_expired_too(
    client: AsyncClient, method: str, path: str
) -> None:
    account = await create_account(client)
    response = await client.request(method, path, headers=bearer(expired_copy(account.token)))
    assert response.status_code == 401
    assert response.json() == {"detail": "Token expired"}
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
