"""Helpers that create users, log in, build auth headers, and make and share lists."""

import asyncio
import itertools
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import httpx
import jwt
from asgi_lifespan import LifespanManager
from beanie import PydanticObjectId
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from starlette.types import ASGIApp

from service.accounts import passwords
from service.core.clock import utc_now
from service.lists import store as lists_store
from service.lists.models import Role

R = TypeVar("R")

DEFAULT_PASSWORD = "correct horse battery staple"

# Argon2id as production runs it (64 MiB, t=3) costs 0.1-0.3 s a hash, and almost every test
# signs up and logs in: that was most of the suite's time. The same Argon2id code path with the
# smallest memory and time costs hashes in ~0.1 ms. Tests of hashing itself (parameters, the
# bcrypt and outdated-hash upgrades, the unknown-email timing equalisation) are marked
# `production_hasher` and keep production's parameters; so do the services that tests start as
# child processes, except those started through tests/serve.py.
TEST_PASSWORD_HASH = PasswordHash(
    (Argon2Hasher(parallelism=1, memory_cost=8, time_cost=1), BcryptHasher())
)
TEST_DUMMY_HASH = TEST_PASSWORD_HASH.hash("dummy password for timing equalisation")
# What the tests change for it (tests/conftest.py: password_hashing; tests/serve.py).
TEST_HASHING: tuple[tuple[object, str, object], ...] = (
    (passwords, "password_hash", TEST_PASSWORD_HASH),
    (passwords, "DUMMY_HASH", TEST_DUMMY_HASH),
)
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
    client: AsyncClient, user: UserAccount, text: str = "buy milk", **fields: Any
) -> dict[str, Any]:
    """Create a todo through the API (with any other `fields`) and return the 201 body."""
    response = await client.post("/api/todos", json={"text": text, **fields}, headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# Lists are made and shared through the lists store: these helpers don't wait for the lists
# and invitations routes (their own features, tested there), and what a member may do with
# todos is all the todo tests need. The app reads a caller's memberships on every request, so
# a list shared here counts from the next request on.
LIST_LIMIT = 100_000


async def create_list(
    client: AsyncClient, user: UserAccount, name: str = "Shared"
) -> dict[str, Any]:
    """A new list owned by `user`: `{"id", "name"}` (what POST /api/lists answers has these
    too). `client` is the running app's: the list is made in its database."""
    stored = await lists_store.create_list(
        owner_id=PydanticObjectId(user.id), name=name, max_lists=LIST_LIMIT, now=utc_now()
    )
    return {"id": str(stored["_id"]), "name": stored["name"]}


async def share_list(
    client: AsyncClient, owner: UserAccount, list_id: str, member: UserAccount, role: str
) -> None:
    """Make `member` a member of `owner`'s list with `role` ("editor" or "viewer"), as an
    accepted invitation would."""
    added = await lists_store.add_member(
        list_id=PydanticObjectId(list_id),
        user_id=PydanticObjectId(member.id),
        role=Role(role),
        max_members=LIST_LIMIT,
        now=utc_now(),
    )
    assert added, f"{member.email} is already a member of {list_id}"


@dataclass
class FakeClock:
    """A clock for the app that only moves when told to."""

    now: datetime = field(default_factory=utc_now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def client_at(app: ASGIApp, ip: str = "127.0.0.1") -> AsyncClient:
    """An HTTP client for a running app whose requests come from `ip` (the socket peer)."""
    return AsyncClient(transport=ASGITransport(app, client=(ip, 50000)), base_url="http://test")


@dataclass(frozen=True)
class Login:
    """What a login answered."""

    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def session_id(self) -> str:
        sid: str = jwt.decode(self.access_token, options={"verify_signature": False})["sid"]
        return sid


async def log_in_session(
    client: AsyncClient,
    email: str,
    password: str = DEFAULT_PASSWORD,
    headers: dict[str, str] | None = None,
) -> Login:
    """Log in through the API and return both tokens."""
    response = await client.post(
        "/api/token", data={"username": email, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Login(access_token=body["access_token"], refresh_token=body["refresh_token"])


async def refresh(client: AsyncClient, refresh_token: str) -> Any:
    """POST /api/token/refresh; the response."""
    return await client.post("/api/token/refresh", json={"refresh_token": refresh_token})


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """An in-process HTTP client for `app`, with its lifespan running."""
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://test") as client,
    ):
        yield client


def wait_until_serving(base_url: str, process: subprocess.Popen[Any]) -> None:
    """Block until the server process answers /api/health (or fail if it exits or stalls).
    60 s: a loaded 2-core machine has taken over 30 s to import and start the service."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited early"
        try:
            if httpx.get(f"{base_url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


class Gate(Generic[R]):
    """Wraps a function run in worker threads (a password hash, say): each call holds its
    thread until the gate is opened, then runs the function. Make it inside the event loop."""

    def __init__(self, function: Callable[..., R]) -> None:
        self._function = function
        self._loop = asyncio.get_running_loop()
        self._entered = asyncio.Semaphore(0)
        self._open = threading.Event()

    def __call__(self, *args: Any) -> R:
        self._loop.call_soon_threadsafe(self._entered.release)
        assert self._open.wait(timeout=30), "the gate was never opened"
        return self._function(*args)

    async def entered(self) -> None:
        """Wait until a call has come in (and is held there); fail after 10 s."""
        async with asyncio.timeout(10):
            await self._entered.acquire()

    def open(self) -> None:
        self._open.set()
