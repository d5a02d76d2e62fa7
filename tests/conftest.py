"""Fixtures: tests run on two tiers, the mocked Mongo and a real wire server.

The wire tier is SecantusDB started once per session (per xdist worker) on a free loopback
port with in-memory storage, or the server in MONGODB_URL when that is set (e.g. a real
MongoDB).

Which tier a test runs on is chosen by what it exercises:
- both tiers (the default), for a test whose outcome depends on what the database does: what
  is stored and read back, filters, sorting, paging, ownership in a query, unique indexes,
  atomic updates and races, throttle counters, sessions looked up;
- `wire_only`, for what mongomock can't do (change streams, transactions, command monitoring);
- `mock_only`, for a test decided before any query that matters: request validation (422s and
  400s of malformed input), tokens refused for their signature or claims, HTTP plumbing
  (headers, body limits, content types, CORS, request ids, routing), OpenAPI, settings. The
  driver has no part in those, so a second run on the wire tier would test nothing more;
  they run on the mock tier, the cheaper one.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from pymongo import AsyncMongoClient
from starlette.types import ASGIApp

from service import security
from service.api import throttling
from service.config import Environment, Settings
from service.db import MongoDatabase
from service.embedded import EmbeddedDatabase
from service.main import create_app
from tests.mongomock_compat import mock_database
from tests.utils import FakeClock, client_at

TEST_SECRET_KEY = "test-secret-key-" + "0123456789abcdef" * 4  # 80 bytes: fine for HS512 too
TIERS = ["mock", "wire"]

# Argon2id as production runs it (64 MiB, t=3) costs 0.1-0.3 s a hash, and almost every test
# signs up and logs in: that was most of the suite's time. The same Argon2id code path with the
# smallest memory and time costs hashes in ~0.1 ms. Tests of hashing itself (parameters, the
# bcrypt and outdated-hash upgrades, the unknown-email timing equalisation) and every test of a
# service in a child process keep the production hasher: mark them `production_hasher`.
TEST_PASSWORD_HASH = PasswordHash(
    (Argon2Hasher(parallelism=1, memory_cost=8, time_cost=1), BcryptHasher())
)
TEST_DUMMY_HASH = TEST_PASSWORD_HASH.hash("dummy password for timing equalisation")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked wire_only don't run on the mocked tier, nor mock_only ones on the wire."""
    items[:] = [
        item
        for item in items
        if not (item.get_closest_marker("wire_only") and "[mock" in item.nodeid)
        and not (item.get_closest_marker("mock_only") and "[wire" in item.nodeid)
    ]


@pytest.fixture(autouse=True)
def password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap Argon2id parameters, unless the test is marked `production_hasher`."""
    if request.node.get_closest_marker("production_hasher"):
        return
    monkeypatch.setattr(security, "password_hash", TEST_PASSWORD_HASH)
    monkeypatch.setattr(security, "DUMMY_HASH", TEST_DUMMY_HASH)
    monkeypatch.setattr(throttling, "DUMMY_HASH", TEST_DUMMY_HASH)


@pytest.fixture(scope="session")
def wire_url() -> Iterator[str]:
    """The wire server's URL: MONGODB_URL, or a SecantusDB started for this session."""
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    with EmbeddedDatabase(":memory:", sync_on_commit=False) as server:
        yield server.url


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    """Which database tier this test runs on; it shows in the test id."""
    tier: str = request.param
    return tier


@pytest.fixture
async def database(tier: str, request: pytest.FixtureRequest) -> AsyncIterator[MongoDatabase]:
    """An empty database for this test, on its tier."""
    if tier == "mock":
        db = mock_database("test")
        yield db
        await db.client.close()
        return
    # The wire server is only started if a wire-tier test runs, hence getfixturevalue.
    url: str = request.getfixturevalue("wire_url")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings a test changes: `@pytest.mark.parametrize("settings_overrides", [{...}])`."""
    return {}


@pytest.fixture
def settings(tmp_path: Any, settings_overrides: dict[str, Any]) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]  # validated into SecretStr
        data_dir=tmp_path,
        **settings_overrides,
    )


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock: starts now, moves only when a test advances it."""
    return FakeClock()


@pytest.fixture
def app(settings: Settings, database: MongoDatabase, clock: FakeClock) -> FastAPI:
    return create_app(settings, database=database, clock=clock)


@pytest.fixture
async def running_app(app: FastAPI) -> AsyncIterator[ASGIApp]:
    """The app with its lifespan running (the ASGI callable that carries its state)."""
    async with LifespanManager(app) as manager:
        yield manager.app


@pytest.fixture
async def client(running_app: ASGIApp) -> AsyncIterator[AsyncClient]:
    """An HTTP client talking to the app in process (from 127.0.0.1)."""
    async with client_at(running_app) as client:
        yield client
