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
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from pydantic import SecretStr
from pymongo import AsyncMongoClient, MongoClient
from starlette.types import ASGIApp

from service.app import create_app
from service.config import Environment, Settings
from service.core.clock import Clock, utc_now
from service.db import MongoDatabase
from service.embedded import EmbeddedDatabase
from tests.mongomock_compat import mock_database
from tests.utils import TEST_HASHING, FakeClock, UserAccount, client_at, create_account

TEST_SECRET_KEY = "test-secret-key-" + "0123456789abcdef" * 4  # 80 bytes: fine for HS512 too
TIERS = ["mock", "wire"]
# The modules whose tests take seconds each (child processes, real waits), the fuzzer first
# (over a minute, on one worker): run first, so that the two xdist workers finish together
# rather than one waiting for the other's last long test. Order is all this changes.
SLOW_MODULES = [
    "test_schemathesis.py",
    # A browser and a server per test, about a minute each.
    "e2e/test_docs_browser.py",
    "events/test_routes.py",
    "test_cli.py",
    "core/test_http_limits.py",
    # Not at the very start, when every worker is busy starting: its timings want some quiet.
    "test_faults.py",
    "test_startup.py",
    "test_workers.py",
    "test_shutdown.py",
    "core/test_proxy_headers.py",
    "test_readme.py",
]
TESTS = Path(__file__).parent


def _slowness(item: pytest.Item) -> int:
    name = item.path.relative_to(TESTS).as_posix()
    return SLOW_MODULES.index(name) if name in SLOW_MODULES else len(SLOW_MODULES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked wire_only don't run on the mocked tier, nor mock_only ones on the wire;
    the slow modules come first (a stable sort: the order within a module is kept)."""
    items[:] = sorted(
        (
            item
            for item in items
            if not (item.get_closest_marker("wire_only") and "[mock" in item.nodeid)
            and not (item.get_closest_marker("mock_only") and "[wire" in item.nodeid)
        ),
        key=_slowness,
    )
    # schemathesis (4.x) gives the test of every operation the same node id on pytest 9 (which
    # builds it from `originalname`), `...::test_api_conforms_to_its_schema`: xdist, which sends
    # tests to workers by node id, then ran one operation of 23, and reports couldn't tell them
    # apart. Their names differ: the node id is made of the name, as pytest 8 did.
    for item in items:
        if isinstance(item, pytest.Function) and not item.nodeid.endswith(item.name):
            item._id = item._id.parse(f"{item.nodeid.rpartition('::')[0]}::{item.name}")


@pytest.fixture(autouse=True)
def password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap Argon2id parameters (tests/utils.py), unless the test is marked
    `production_hasher`."""
    if request.node.get_closest_marker("production_hasher"):
        return
    for module, name, value in TEST_HASHING:
        monkeypatch.setattr(module, name, value)


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


@pytest.fixture(scope="session")
def _mock_database() -> MongoDatabase:
    """The mock tier's database, emptied before each test (tests/conftest.py: database)."""
    return mock_database("test")


@pytest.fixture(scope="session")
async def _wire_database(wire_url: str) -> AsyncIterator[MongoDatabase]:
    """The wire tier's database, dropped before each test (see `database`)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


@pytest.fixture(scope="session")
def _wire_admin(wire_url: str) -> Iterator[MongoClient[dict[str, Any]]]:
    """A blocking client, to empty the wire database from a plain (not async) fixture."""
    client: MongoClient[dict[str, Any]] = MongoClient(wire_url)
    with client:
        yield client


@pytest.fixture
def database(tier: str, request: pytest.FixtureRequest) -> MongoDatabase:
    """An empty database for this test, on its tier.

    One database per tier and worker, emptied of every collection (and so of every index)
    before each test: the same as a new one to the app, whose lifespan then initialises it,
    but it lets the app itself be shared (see `app`). The wire server is only started if a
    wire-tier test runs, hence getfixturevalue (from a plain fixture: an async one would
    have to start an async fixture from inside the running event loop).
    """
    db: MongoDatabase
    if tier == "mock":
        db = request.getfixturevalue("_mock_database")
        store: Any = cast(Any, db).delegate  # mongomock-motor: the sync mongomock database
        for name in store.list_collection_names():
            store.drop_collection(name)
        return db
    db = request.getfixturevalue("_wire_database")
    request.getfixturevalue("_wire_admin").drop_database(db.name)
    return db


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings a test changes: `@pytest.mark.parametrize("settings_overrides", [{...}])`."""
    return {}


# Tests write lists and memberships through the stores too (tests/utils.py: create_list,
# share_list), outside any request: with the authentication cache on, a worker learns of
# those only from its change stream, a few milliseconds later, and the next request could
# race it. So the cache is off unless a test turns it on (tests/accounts/test_auth_cache.py,
# tests/test_round_trips.py), and everything else reads sessions from the database.
CACHE_OFF = {"auth_cache_max_staleness_ms": 0}


@pytest.fixture
def settings(tmp_path: Any, settings_overrides: dict[str, Any]) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]  # validated into SecretStr
        data_dir=tmp_path,
        **{**CACHE_OFF, **settings_overrides},
    )


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock: starts now, moves only when a test advances it."""
    return FakeClock()


class ClockSlot:
    """The clock a shared app is built with: it reads the running test's clock."""

    def __init__(self) -> None:
        self.current: Clock = utc_now

    def __call__(self) -> datetime:
        return self.current()


SharedApps = dict[tuple[str, int], tuple[FastAPI, ClockSlot]]


@pytest.fixture(scope="session")
def _shared_apps() -> SharedApps:
    return {}


def _settings_key(settings: Settings) -> str:
    """What makes two Settings build the same app (data_dir is only read in development)."""
    values = settings.model_dump(exclude={"data_dir"})
    return repr(
        sorted(
            (name, value.get_secret_value() if isinstance(value, SecretStr) else value)
            for name, value in values.items()
        )
    )


@pytest.fixture
def app(
    settings: Settings, database: MongoDatabase, clock: FakeClock, _shared_apps: SharedApps
) -> FastAPI:
    """`create_app(settings, database=database, clock=clock)`.

    Building the app costs ~70 ms (FastAPI makes every route's models anew): more than most
    tests. So each worker builds one per tier and distinct settings and reuses it; the app
    keeps nothing between tests (its state is made by its lifespan, which each test runs,
    its database is emptied first), and it reads the time from this test's clock.
    """
    key = (_settings_key(settings), id(database))
    if key not in _shared_apps:
        slot = ClockSlot()
        _shared_apps[key] = (create_app(settings, database=database, clock=slot), slot)
    shared, slot = _shared_apps[key]
    slot.current = clock
    return shared


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


@pytest.fixture
async def alice(client: AsyncClient) -> UserAccount:
    """A signed-up, logged-in user."""
    return await create_account(client)


@pytest.fixture
async def bob(client: AsyncClient) -> UserAccount:
    """Another one, for what must not cross between users."""
    return await create_account(client)
