"""The authentication cache (service/accounts/cache.py) keeps the revocation rule: refused on
the very next request of the worker that made the change, on another worker within
AUTH_CACHE_MAX_STALENESS_MS, and from the database whenever the access stream can't vouch for
the cache.

Two workers are two apps on one database, each with its lifespan (its access stream, its
cache), as two processes would be; the requests of each carry its own context, so what one
revokes reaches the other only through its stream.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from asgi_lifespan import LifespanManager
from beanie import PydanticObjectId
from httpx import AsyncClient, Response
from pymongo.errors import OperationFailure

from service.accounts import store as account_store
from service.accounts.cache import AuthCache
from service.accounts.store import Authenticated
from service.app import create_app
from service.config import Settings
from service.core.clock import utc_now
from service.core.watch import AccessWatcher, changed_here
from service.db import MongoDatabase
from tests.utils import (
    FakeClock,
    UserAccount,
    client_at,
    create_account,
    log_in_session,
    refresh,
    share_list,
)

BOUND_MS = 1000
# What a worker may take beyond the bound to notice (its event loop shares two busy cores).
MARGIN_S = 1.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auth_cache_max_staleness_ms": BOUND_MS}


@dataclass
class Worker:
    client: AsyncClient
    state: dict[str, Any]

    @property
    def cache(self) -> AuthCache:
        cache: AuthCache = self.state["auth_cache"]
        return cache

    @property
    def watcher(self) -> AccessWatcher:
        watcher: AccessWatcher = self.state["access"]
        return watcher


@asynccontextmanager
async def worker(
    settings: Settings, database: MongoDatabase, clock: FakeClock
) -> AsyncIterator[Worker]:
    app = create_app(settings, database=database, clock=clock)
    async with LifespanManager(app) as manager, client_at(manager.app) as client:
        yield Worker(client, manager._state)


@pytest.fixture
async def here(
    settings: Settings, database: MongoDatabase, clock: FakeClock
) -> AsyncIterator[Worker]:
    async with worker(settings, database, clock) as started:
        yield started


@pytest.fixture
async def there(
    here: Worker, settings: Settings, database: MongoDatabase, clock: FakeClock
) -> AsyncIterator[Worker]:
    async with worker(settings, database, clock) as started:
        yield started


def session_of(user: UserAccount) -> str:
    sid: str = jwt.decode(user.token, options={"verify_signature": False})["sid"]
    return sid


async def make_list(client: AsyncClient, owner: UserAccount) -> dict[str, Any]:
    response = await client.post("/api/lists", json={"name": "Shared"}, headers=owner.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def me(on: Worker, user: UserAccount) -> Response:
    return await on.client.get("/api/me", headers=user.headers)


async def warm(user: UserAccount, *workers: Worker) -> None:
    """The user's session cached on each worker (a second request answered from memory)."""
    for on in workers:
        assert (await me(on, user)).status_code == 200
        assert len(on.cache) == 1


async def deafen(on: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the worker's access stream bring nothing more while its cache stays trusted: what
    it refuses from then on, only its own requests can have told it (at once, not by chance
    of the stream's timing)."""
    stream: Any = on.watcher._stream
    hanging = asyncio.Event()

    async def hang() -> None:
        hanging.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(stream, "try_next", hang)
    monkeypatch.setattr(on.watcher, "caught_up_within", lambda seconds: True)
    await asyncio.wait_for(hanging.wait(), 5)


async def within_bound(request: Callable[[], Awaitable[Response]], status: int) -> float:
    """Repeat the request until it answers `status`; the seconds that took (failing past the
    bound and the margin)."""
    started = time.monotonic()
    while (await request()).status_code != status:
        assert time.monotonic() - started < BOUND_MS / 1000 + MARGIN_S, "not within the bound"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


# ---- wire tier: change streams ----


@pytest.mark.wire_only
async def test_a_logout_is_refused_at_once_here_and_within_the_bound_elsewhere(
    here: Worker, there: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here, there)
    await deafen(here, monkeypatch)
    assert (await here.client.post("/api/logout", headers=alice.headers)).status_code == 204
    assert (await me(here, alice)).status_code == 401  # the very next request
    await within_bound(lambda: me(there, alice), 401)


@pytest.mark.wire_only
@pytest.mark.parametrize(
    "revoke",
    [
        pytest.param(lambda c, u: c.post("/api/logout/all", headers=u.headers), id="logout-all"),
        pytest.param(
            lambda c, u: c.put(
                "/api/me/password",
                json={"current_password": u.password, "new_password": "another good password"},
                headers=u.headers,
            ),
            id="password",
        ),
        pytest.param(
            lambda c, u: c.request(
                "DELETE", "/api/me", json={"password": u.password}, headers=u.headers
            ),
            id="account",
        ),
    ],
)
async def test_every_revocation_is_refused_at_once_on_the_worker_that_made_it(
    here: Worker,
    there: Worker,
    revoke: Callable[[AsyncClient, UserAccount], Awaitable[Response]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here, there)
    await deafen(here, monkeypatch)
    assert (await revoke(here.client, alice)).is_success
    assert (await me(here, alice)).status_code == 401
    await within_bound(lambda: me(there, alice), 401)


@pytest.mark.wire_only
async def test_a_deleted_session_is_refused_at_once(
    here: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here)
    await deafen(here, monkeypatch)
    sessions = (await here.client.get("/api/sessions", headers=alice.headers)).json()
    [current] = [session["id"] for session in sessions if session["current"]]
    response = await here.client.delete(f"/api/sessions/{current}", headers=alice.headers)
    assert response.status_code == 204
    assert (await me(here, alice)).status_code == 401


@pytest.mark.wire_only
@pytest.mark.parametrize(
    "settings_overrides",
    [{"auth_cache_max_staleness_ms": BOUND_MS, "refresh_reuse_grace_seconds": 0}],
)
async def test_a_reused_refresh_token_ends_its_session_at_once(
    here: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    login = await log_in_session(here.client, alice.email)
    for _ in range(2):
        assert (await here.client.get("/api/me", headers=login.headers)).status_code == 200
    await deafen(here, monkeypatch)
    assert (await refresh(here.client, login.refresh_token)).status_code == 200
    assert (await refresh(here.client, login.refresh_token)).status_code == 401  # reused
    assert (await here.client.get("/api/me", headers=login.headers)).status_code == 401


@pytest.mark.wire_only
@pytest.mark.parametrize(
    "settings_overrides", [{"auth_cache_max_staleness_ms": BOUND_MS, "max_sessions_per_user": 1}]
)
async def test_a_login_past_the_session_cap_ends_the_oldest_at_once(
    here: Worker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here)
    await deafen(here, monkeypatch)
    clock.advance(seconds=1)  # the older session is the one that ends
    await log_in_session(here.client, alice.email)
    assert (await me(here, alice)).status_code == 401


@pytest.mark.wire_only
async def test_me_shows_a_patched_user_at_once_here_and_within_the_bound_elsewhere(
    here: Worker, there: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here, there)
    await deafen(here, monkeypatch)
    response = await here.client.patch("/api/me", json={"fname": "Renamed"}, headers=alice.headers)
    assert response.status_code == 200
    assert (await me(here, alice)).json()["fname"] == "Renamed"

    async def renamed_there() -> Response:
        response = await me(there, alice)
        return Response(200 if response.json()["fname"] == "Renamed" else 409)

    await within_bound(renamed_there, 200)


@pytest.mark.wire_only
async def test_a_member_removed_or_lowered_is_refused_on_their_next_request_on_both_workers(
    here: Worker, there: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    bob = await create_account(here.client)
    shared = await make_list(here.client, alice)
    await share_list(here.client, alice, shared["id"], bob, "editor")

    def write(on: Worker) -> Awaitable[Response]:
        body = {"text": "bob's", "list_id": shared["id"]}
        return on.client.post("/api/todos", json=body, headers=bob.headers)

    def read(on: Worker) -> Awaitable[Response]:
        return on.client.get(f"/api/lists/{shared['id']}", headers=bob.headers)

    for on in (here, there):
        assert (await write(on)).status_code == 201
        assert (await write(on)).status_code == 201  # from the cache
    await deafen(here, monkeypatch)
    lowered = await here.client.patch(
        f"/api/lists/{shared['id']}/members/{bob.id}",
        json={"role": "viewer"},
        headers=alice.headers,
    )
    assert lowered.status_code == 200
    # Alice's request lowered it; bob's next request on that worker is refused at once.
    assert (await write(here)).status_code == 403
    await within_bound(lambda: write(there), 403)
    for on in (here, there):
        assert (await read(on)).status_code == 200
    removed = await here.client.delete(
        f"/api/lists/{shared['id']}/members/{bob.id}", headers=alice.headers
    )
    assert removed.status_code == 204
    assert (await read(here)).status_code == 404
    await within_bound(lambda: read(there), 404)


@pytest.mark.wire_only
async def test_leaving_a_list_is_seen_at_once(
    here: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    bob = await create_account(here.client)
    shared = await make_list(here.client, alice)
    await share_list(here.client, alice, shared["id"], bob, "viewer")
    url = f"/api/lists/{shared['id']}"
    assert (await here.client.get(url, headers=bob.headers)).status_code == 200
    assert (await here.client.get(url, headers=bob.headers)).status_code == 200
    await deafen(here, monkeypatch)
    left = await here.client.delete(f"{url}/members/{bob.id}", headers=bob.headers)
    assert left.status_code == 204
    assert (await here.client.get(url, headers=bob.headers)).status_code == 404


@pytest.mark.wire_only
async def test_a_deleted_list_is_gone_for_its_members_at_once(
    here: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    bob = await create_account(here.client)
    shared = await make_list(here.client, alice)
    await share_list(here.client, alice, shared["id"], bob, "viewer")
    url = f"/api/lists/{shared['id']}"
    assert (await here.client.get(url, headers=bob.headers)).status_code == 200
    await deafen(here, monkeypatch)
    assert (await here.client.delete(url, headers=alice.headers)).status_code == 204
    # (A deleted list's reads and writes also check the list itself in the database, so this
    # holds by that too; the membership ended with it is what the cache drops.)
    todos = await here.client.get(f"/api/todos?list_id={shared['id']}", headers=bob.headers)
    assert todos.status_code == 404


@pytest.mark.wire_only
async def test_a_new_list_is_readable_by_its_creator_at_once(
    here: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    assert (await here.client.get("/api/lists", headers=alice.headers)).status_code == 200
    await deafen(here, monkeypatch)
    shared = await make_list(here.client, alice)
    url = f"/api/lists/{shared['id']}"
    assert (await here.client.get(url, headers=alice.headers)).status_code == 200


@pytest.mark.wire_only
async def test_a_transfer_is_seen_by_both_members_at_once(
    here: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    bob = await create_account(here.client)
    shared = await make_list(here.client, alice)
    await share_list(here.client, alice, shared["id"], bob, "editor")
    url = f"/api/lists/{shared['id']}"
    for user in (alice, bob):
        assert (await here.client.get(url, headers=user.headers)).status_code == 200
    await deafen(here, monkeypatch)
    handed = await here.client.post(
        f"{url}/transfer", json={"user_id": bob.id}, headers=alice.headers
    )
    assert handed.status_code == 200
    rename = {"name": "Bob's now"}
    assert (await here.client.patch(url, json=rename, headers=alice.headers)).status_code == 403
    assert (await here.client.patch(url, json=rename, headers=bob.headers)).status_code == 200


@pytest.mark.wire_only
async def test_a_stream_that_fails_drops_the_cache_and_the_database_answers(
    here: Worker, there: Worker
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here, there)
    stream: Any = there.watcher._stream

    async def fail() -> None:
        raise OperationFailure("the stream died", code=2)

    stream.try_next = fail
    started = time.monotonic()
    while len(there.cache):  # noticed at the end of the getMore under way
        assert time.monotonic() - started < BOUND_MS / 1000 + MARGIN_S
        await asyncio.sleep(0.01)
    assert not there.watcher.caught_up_within(BOUND_MS / 1000)
    # Revoked elsewhere, refused here at once: nothing is answered from memory meanwhile.
    assert (await here.client.post("/api/logout", headers=alice.headers)).status_code == 204
    assert (await me(there, alice)).status_code == 401

    # The stream comes back (resumed where it was): the cache is trusted again.
    bob = await create_account(here.client)
    started = time.monotonic()
    while not there.watcher.caught_up_within(BOUND_MS / 1000):
        assert time.monotonic() - started < 10, "the stream did not come back"
        await asyncio.sleep(0.05)
    await warm(bob, there)


@pytest.mark.wire_only
async def test_entries_are_not_trusted_while_the_stream_is_silent_beyond_the_bound(
    here: Worker, there: Worker
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here, there)
    stream: Any = there.watcher._stream
    hanging = asyncio.Event()

    async def hang() -> None:
        hanging.set()
        await asyncio.sleep(3600)

    stream.try_next = hang
    await asyncio.wait_for(hanging.wait(), 5)
    # Its revocation never reaches the silent stream: only the bound makes it count there.
    assert (await here.client.post("/api/logout", headers=alice.headers)).status_code == 204
    await within_bound(lambda: me(there, alice), 401)
    assert len(there.cache) == 1  # still kept, not trusted


@pytest.mark.wire_only
async def test_a_revocation_heard_during_a_fill_keeps_the_fill_out(
    here: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await create_account(here.client)
    read = account_store.authenticate

    async def revoked_meanwhile(**kwargs: Any) -> Authenticated | None:
        found = await read(**kwargs)
        # What a logout of this session would tell the cache, between the read and the store.
        changed_here("sessions", kwargs["session_id"])
        return found

    monkeypatch.setattr(account_store, "authenticate", revoked_meanwhile)
    assert (await me(here, alice)).status_code == 200  # read before the revocation
    assert len(here.cache) == 0
    monkeypatch.setattr(account_store, "authenticate", read)
    await warm(alice, here)


@pytest.mark.wire_only
async def test_a_cached_session_is_refused_once_it_expires(
    here: Worker, clock: FakeClock, settings: Settings
) -> None:
    alice = await create_account(here.client)
    await warm(alice, here)
    clock.advance(days=settings.refresh_token_expire_days, seconds=1)
    assert (await me(here, alice)).status_code == 401


@pytest.mark.wire_only
async def test_a_token_of_another_user_never_matches_a_cached_session(here: Worker) -> None:
    alice = await create_account(here.client)
    await warm(alice, here)
    entry = next(iter(here.cache._entries.values()))
    assert (
        here.cache.get(entry.found.session_id, PydanticObjectId(), None, entry.expires_at) is None
    )


@pytest.mark.wire_only
@pytest.mark.parametrize("settings_overrides", [{"auth_cache_max_staleness_ms": 0}])
async def test_a_staleness_of_0_turns_the_cache_off(here: Worker) -> None:
    alice = await create_account(here.client)
    for _ in range(2):
        assert (await me(here, alice)).status_code == 200
    assert not here.cache.enabled
    assert len(here.cache) == 0


async def test_without_change_streams_every_request_reads_the_database(
    here: Worker, tier: str
) -> None:
    alice = await create_account(here.client)
    for _ in range(2):
        assert (await me(here, alice)).status_code == 200
    assert here.cache.enabled is (tier == "wire")
    assert len(here.cache) == (1 if tier == "wire" else 0)


# ---- the cache alone ----


class FreshWatcher(AccessWatcher):
    """Always caught up."""

    def __init__(self) -> None:
        super().__init__()
        self.available = True

    def caught_up_within(self, seconds: float) -> bool:
        return True


@pytest.mark.mock_only
async def test_the_cache_keeps_at_most_max_entries_least_recently_used_first(
    here: Worker,
) -> None:
    users = [await create_account(here.client) for _ in range(3)]
    cache = AuthCache(FreshWatcher(), max_staleness_ms=BOUND_MS, max_entries=2)
    found = [
        await account_store.authenticate(
            session_id=session_of(user), user_id=PydanticObjectId(user.id), now=utc_now()
        )
        for user in users
    ]
    for entry in found[:2]:
        assert entry is not None
        cache.put(cache.generation, entry, None)
    first = found[0]
    assert first is not None
    assert cache.get(first.session_id, PydanticObjectId(users[0].id), None, utc_now())
    assert found[2] is not None
    cache.put(cache.generation, found[2], None)  # the second, least recently used, goes
    assert len(cache) == 2
    assert cache.get(found[2].session_id, PydanticObjectId(users[2].id), None, utc_now())
    second = found[1]
    assert second is not None
    assert cache.get(second.session_id, PydanticObjectId(users[1].id), None, utc_now()) is None
    assert len(cache._tagged) == 4  # each kept entry's session and user, nothing more
