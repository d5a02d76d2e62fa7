"""Helpers that create users, log in and build auth headers."""

import itertools
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

DEFAULT_PASSWORD = "correct horse battery staple"
_counter = itertools.count()


@dataclass(frozen=True)
class UserAccount:
    id: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_email() -> str:
    return f"user{next(_counter)}@example.com"


async def sign_up(
    client: AsyncClient, *, email: str | None = None, password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    """Create a user through the API and return the 201 body."""
    response = await client.post(
        "/api/users",
        json={
            "email": email or new_email(),
            "fname": "Ada",
            "lname": "Lovelace",
            "password": password,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def log_in(client: AsyncClient, email: str, password: str = DEFAULT_PASSWORD) -> str:
    """Log in through the API and return the access token."""
    response = await client.post("/api/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def create_account(
    client: AsyncClient, *, email: str | None = None, password: str = DEFAULT_PASSWORD
) -> UserAccount:
    """Sign up and log in a new user."""
    user = await sign_up(client, email=email, password=password)
    token = await log_in(client, user["email"], password)
    return UserAccount(id=user["id"], email=user["email"], password=password, token=token)


async def create_todo(
    client: AsyncClient, user: UserAccount, text: str = "buy milk"
) -> dict[str, Any]:
    """Create a todo through the API and return the 201 body."""
    response = await client.post("/api/todos", json={"text": text}, headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """An in-process HTTP client for `app`, with its lifespan running."""
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://test") as client,
    ):
        yield client


def wait_until_serving(base_url: str, process: subprocess.Popen[Any]) -> None:
    """Block until the server process answers /api/health (or fail if it exits or stalls)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited early"
        try:
            if httpx.get(f"{base_url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")
