"""Database round trips per request, for each request the benchmark (bench/) measures.

A pymongo command listener on the wire tier records every command the service sends while one
request runs. The expected lists are exact, so a new query on a hot path fails here instead of
silently costing every request a round trip; each command is justified where it is pinned
(and in bench/REPORT.md).

Only the request's own commands count: the change streams' `getMore` loops
(service/events/feed.py, service/core/watch.py) run in their own tasks, outside any request,
and are left out by a context variable.

The authentication cache is on here (AUTH_CACHE_MAX_STALENESS_MS, generous so that a busy
machine can't make its stream look stale): each test's user is `warm`, so the pins are of the
cached path, where authenticating costs no round trip; the uncached path (a first request, or
the cache off) is pinned apart.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from bson import ObjectId
from httpx import ASGITransport, AsyncClient
from pwdlib.hashers.argon2 import Argon2Hasher
from pymongo import AsyncMongoClient, monitoring

from service.app import create_app
from service.config import Settings
from service.core.watch import AccessWatcher
from service.db import MongoDatabase
from tests.utils import DEFAULT_PASSWORD, UserAccount, create_account, create_list, create_todo

pytestmark = pytest.mark.wire_only  # mongomock has no command monitoring

# (command name, collection), e.g. ("find", "todos").
Command = tuple[str, str]

# True while the test's request runs: pymongo calls the listener in the task that sends the
# command, and the app runs in the test's task (ASGITransport), so a background task started
# before the request (the change feed) doesn't see it.
_recording: ContextVar[bool] = ContextVar("recording", default=False)


class CommandRecorder(monitoring.CommandListener):
    """The commands the current request started, in order."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not _recording.get():
            return
        name = event.command_name
        target = event.command.get("collection" if name == "getMore" else name)
        self.commands.append((name, str(target)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


CACHE_ON = {"auth_cache_max_staleness_ms": 60_000}
CACHE_OFF = {"auth_cache_max_staleness_ms": 0}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return CACHE_ON


@dataclass
class Recorded:
    client: AsyncClient
    recorder: CommandRecorder
    database: MongoDatabase
    access: AccessWatcher

    async def warm(self, user: UserAccount) -> None:
        """Fill the worker's cache with the user's session (with and without their
        memberships), once its access stream has brought every write made so far: the tests'
        own writes through the stores (tests/utils.py) reach the cache only that way."""
        since = time.monotonic()
        for _ in range(1000):  # 10 s
            if (self.access.caught_up_at or 0) > since:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the access stream did not catch up")
        for url in ("/api/me", "/api/todos?limit=1"):
            response = await self.client.get(url, headers=user.headers)
            assert response.is_success, response.text

    async def commands_of(self, method: str, url: str, **kwargs: Any) -> list[Command]:
        """The database commands that one request caused (it must succeed)."""
        self.recorder.commands.clear()
        token = _recording.set(True)
        try:
            response = await self.client.request(method, url, **kwargs)
        finally:
            _recording.reset(token)
        assert response.is_success, response.text
        return list(self.recorder.commands)


@pytest.fixture
async def recorded(wire_url: str, settings: Settings) -> AsyncIterator[Recorded]:
    """The app on the wire tier, through a client whose commands are recorded."""
    recorder = CommandRecorder()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        wire_url, tz_aware=True, event_listeners=[recorder]
    )
    name = f"test_{uuid.uuid4().hex[:12]}"
    app = create_app(settings, database=mongo[name])
    try:
        async with (
            LifespanManager(app) as manager,
            AsyncClient(transport=ASGITransport(manager.app), base_url="http://test") as client,
        ):
            yield Recorded(client, recorder, mongo[name], manager._state["access"])
    finally:
        await mongo.drop_database(name)
        await mongo.close()


async def _user_with_todos(recorded: Recorded, count: int) -> tuple[UserAccount, list[str]]:
    """A user with `count` todos, their session cached (warm)."""
    user = await create_account(recorded.client)
    todos = [await create_todo(recorded.client, user, f"todo {n}") for n in range(count)]
    await recorded.warm(user)
    return user, [todo["id"] for todo in todos]


# An authenticated request the worker's cache can't answer (its first, or with the cache off):
# the session by _id, its user by _id in a $lookup, one round trip. Routes that need the
# caller's lists (every todo route) $lookup their memberships (by user_id) in the same
# aggregate: which lists the caller may read or change costs no round trip of its own.
# Once cached (service/accounts/cache.py), none: a logged-out session, a deleted account or a
# removed member is still refused on the very next request (the revocation clears the entry).
AUTH: Command = ("aggregate", "sessions")


async def test_health_makes_no_round_trip(recorded: Recorded) -> None:
    assert await recorded.commands_of("GET", "/api/health") == []


async def test_me_makes_no_round_trip_once_cached(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    commands = await recorded.commands_of("GET", "/api/me", headers=user.headers)
    assert commands == []  # the body is the cached user


async def test_a_first_request_reads_the_session(recorded: Recorded) -> None:
    user = await create_account(recorded.client)
    assert await recorded.commands_of("GET", "/api/me", headers=user.headers) == [AUTH]
    assert await recorded.commands_of("GET", "/api/me", headers=user.headers) == []


@pytest.mark.parametrize("settings_overrides", [CACHE_OFF])
async def test_without_the_cache_every_request_reads_the_session(recorded: Recorded) -> None:
    user, [todo_id] = await _user_with_todos(recorded, 1)
    assert await recorded.commands_of("GET", "/api/me", headers=user.headers) == [AUTH]
    commands = await recorded.commands_of("GET", f"/api/todos/{todo_id}", headers=user.headers)
    assert commands == [AUTH, ("find", "todos")]


@pytest.mark.parametrize(
    "url",
    [
        "/api/todos?limit=20",
        "/api/mytodos?limit=20",
        # One list named: the caller's role in it came with the session.
        "/api/todos?limit=20&list_id={list}",
    ],
)
async def test_listing_twenty_todos_makes_one_round_trip(recorded: Recorded, url: str) -> None:
    user, _ = await _user_with_todos(recorded, 25)
    commands = await recorded.commands_of("GET", url.format(list=user.id), headers=user.headers)
    assert commands == [
        # One batch with a limit (21 for /api/todos: the extra one says whether there is a
        # next page, without a count): the server closes the cursor, so no getMore/killCursors.
        # The filter is the caller's lists (list_id $in), known from their cached memberships.
        ("find", "todos"),
    ]


async def test_reading_a_todo_makes_one_round_trip(recorded: Recorded) -> None:
    user, [todo_id] = await _user_with_todos(recorded, 1)
    commands = await recorded.commands_of("GET", f"/api/todos/{todo_id}", headers=user.headers)
    # The todo by _id, filtered on the lists the caller can read (their cached memberships):
    # a todo of a list they aren't a member of is not found, in the same query.
    assert commands == [("find", "todos")]


# A create into any list: the insert, then a conditional $inc of the list's todo_count that
# takes a slot under MAX_TODOS_PER_LIST atomically (a count before the insert would race) and
# only while the list is live (todos/service._insert: if it fails, the todo is withdrawn). A
# deletion of the list after the slot sweeps the todo with the list's others, so no read
# checks afterwards that the list is still live. The caller's right to write in the list came
# with their cached memberships.
CREATE: list[Command] = [("insert", "todos"), ("update", "lists")]


async def test_reading_a_list_makes_one_round_trip(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    commands = await recorded.commands_of("GET", f"/api/lists/{user.id}", headers=user.headers)
    assert commands == [("aggregate", "lists")]  # with its owner's names


async def test_creating_a_todo_makes_two_round_trips(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    commands = await recorded.commands_of(
        "POST", "/api/todos", json={"text": "new"}, headers=user.headers
    )
    assert commands == CREATE


async def test_creating_a_todo_in_another_list_makes_two_round_trips(
    recorded: Recorded,
) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    other = await create_list(recorded.client, user, "other")
    await recorded.warm(user)  # with the new list's membership
    commands = await recorded.commands_of(
        "POST", "/api/todos", json={"text": "new", "list_id": other["id"]}, headers=user.headers
    )
    assert commands == CREATE


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize("if_match", [False, True])
async def test_updating_a_todo_makes_two_round_trips(
    recorded: Recorded, method: str, if_match: bool
) -> None:
    user, [todo_id] = await _user_with_todos(recorded, 1)
    headers = {**user.headers, **({"If-Match": '"1"'} if if_match else {})}
    commands = await recorded.commands_of(
        method,
        f"/api/todos/{todo_id}",
        # Naming the todo's own list is no move: it costs nothing more.
        json={"text": "changed", "completed": True, "list_id": user.id},
        headers=headers,
    )
    assert commands == [
        # The filter on the lists the caller may change, the If-Match version check and the
        # write: one atomic update.
        ("update", "todos"),
        # The new state by _id, for the body and ETag (not findAndModify: on SecantusDB it
        # scans the whole collection).
        ("find", "todos"),
    ]


@pytest.mark.parametrize("lists", [1, 2])
async def test_deleting_a_todo(recorded: Recorded, lists: int) -> None:
    user, [todo_id] = await _user_with_todos(recorded, 1)
    for n in range(1, lists):
        await create_list(recorded.client, user, f"list {n}")
    await recorded.warm(user)
    commands = await recorded.commands_of("DELETE", f"/api/todos/{todo_id}", headers=user.headers)
    assert commands == [
        # The tombstone, filtered on the lists the caller may change (+ If-Match): one update.
        ("update", "todos"),
        # Which list it was in, to give that list its slot back: known from the filter when
        # the caller may change one list only, read back (by _id) when they may change several.
        *([("find", "todos")] if lists > 1 else []),
        ("update", "lists"),
    ]


async def test_moving_a_todo(recorded: Recorded) -> None:
    user, [todo_id] = await _user_with_todos(recorded, 1)
    target = await create_list(recorded.client, user, "target")
    await recorded.warm(user)
    commands = await recorded.commands_of(
        "PATCH", f"/api/todos/{todo_id}", json={"list_id": target["id"]}, headers=user.headers
    )
    assert commands == [
        # A PATCH without other changes reads the todo (no write to try first): which list
        # it is in, whether the caller may change it, at what version.
        ("find", "todos"),
        # A slot in the target taken first (MAX_TODOS_PER_LIST), then the move: one atomic
        # update conditional on the todo still being in its list, then its new state by _id.
        ("update", "lists"),
        ("update", "todos"),
        ("find", "todos"),
        # The source's slot given back: both counts stay exact.
        ("update", "lists"),
        # Whether the target is still live: deleted since its slot was taken, the todo must go
        # with it (todos/service._stay_in_live_list; not for a move into the default list).
        ("find", "lists"),
    ]


LOGIN = [
    ("find", "users"),  # by email
    # A slot in the email's failure budget, then in the IP's, each one conditional update
    # (or upsert), taken before the password is verified: parallel guesses can't all pass a
    # check made before any of them was counted.
    ("update", "throttle_counters"),
    ("update", "throttle_counters"),
    # The right password: the email's count is cleared, the IP's slot given back.
    ("delete", "throttle_counters"),
    ("update", "throttle_counters"),
    ("insert", "sessions"),  # the new session, which the refresh token names
    # The active sessions beyond the newest MAX_SESSIONS_PER_USER (skip); the update_many
    # that revokes them only follows when there are any.
    ("find", "sessions"),
]
# Where a password hash upgrade is written: after the verification and its counting.
AFTER_VERIFYING = 5


async def _log_in(recorded: Recorded, user: UserAccount, password: str) -> list[Command]:
    return await recorded.commands_of(
        "POST", "/api/token", data={"username": user.email, "password": password}
    )


async def test_logging_in(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    # A current hash needs no update.
    assert await _log_in(recorded, user, DEFAULT_PASSWORD) == LOGIN


async def test_logging_in_after_a_failure_clears_the_email_count(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    response = await recorded.client.post(
        "/api/token", data={"username": user.email, "password": "wrong password"}
    )
    assert response.status_code == 401
    # The same commands: the email's count is cleared either way.
    assert await _log_in(recorded, user, DEFAULT_PASSWORD) == LOGIN


@pytest.mark.production_hasher
async def test_logging_in_with_an_outdated_hash_adds_the_upgrade_write(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    # pwdlib's default Argon2 parameters (4 lanes), as stored before the service used 1 lane.
    outdated = Argon2Hasher().hash(DEFAULT_PASSWORD)
    assert ",p=4$" in outdated
    await recorded.database.users.update_one(
        {"_id": ObjectId(user.id)}, {"$set": {"hashed_password": outdated}}
    )
    commands = await _log_in(recorded, user, DEFAULT_PASSWORD)
    # The rehash, once.
    assert commands == [*LOGIN[:AFTER_VERIFYING], ("update", "users"), *LOGIN[AFTER_VERIFYING:]]
    stored = await recorded.database.users.find_one({"_id": ObjectId(user.id)})
    assert stored is not None
    assert ",p=1$" in stored["hashed_password"]
    assert await _log_in(recorded, user, DEFAULT_PASSWORD) == LOGIN


@pytest.mark.parametrize("settings_overrides", [CACHE_OFF])
async def test_sharing_a_list(recorded: Recorded) -> None:
    """Each step of sharing a list, from creating it to deleting it, as the README states
    (without the cache: each step changes memberships, which the cache would then read again
    or not as its stream's timing has it; AUTH is what a request it can't answer costs)."""
    alice, _ = await _user_with_todos(recorded, 0)
    bob, _ = await _user_with_todos(recorded, 0)
    calls = recorded.commands_of
    created = await calls("POST", "/api/lists", json={"name": "Shared"}, headers=alice.headers)
    assert created == [
        AUTH,
        ("update", "lists"),  # a slot of MAX_LISTS_PER_USER, on the owner's default list
        ("insert", "lists"),
        ("insert", "memberships"),  # the owner's
    ]
    list_id = (await recorded.client.get("/api/lists?limit=2", headers=alice.headers)).json()[
        "items"
    ][1]["id"]
    url = f"/api/lists/{list_id}"
    invite = {"email": bob.email, "role": "viewer"}
    assert await calls("POST", f"{url}/invitations", json=invite, headers=alice.headers) == [
        AUTH,
        ("update", "throttle_counters"),  # MAX_INVITATIONS_PER_DAY, counted first
        ("aggregate", "memberships"),  # is the email a member's already? (409)
        ("update", "lists"),  # a slot of MAX_PENDING_INVITATIONS
        ("update", "invitations"),  # the upsert on (list, email)
    ]
    assert await calls("GET", f"{url}/invitations", headers=alice.headers) == [
        AUTH,
        ("find", "invitations"),
    ]
    assert await calls("GET", "/api/invitations", headers=bob.headers) == [
        AUTH,
        ("aggregate", "invitations"),  # with each one's list and inviter, by $lookup
    ]
    invitation = (await recorded.client.get("/api/invitations", headers=bob.headers)).json()[0]
    assert await calls(
        "POST", f"/api/invitations/{invitation['id']}/accept", headers=bob.headers
    ) == [
        AUTH,
        ("aggregate", "invitations"),  # addressed to the caller, unexpired, list live
        ("delete", "invitations"),  # the claim: of parallel accepts, one deletes it
        ("update", "lists"),  # a slot of MAX_LIST_MEMBERS (409 if full: the claim is undone)
        ("update", "memberships"),  # an ended membership comes back, or else
        ("insert", "memberships"),  # a new one (the unique key makes it one)
        ("update", "lists"),  # the pending invitation's slot given back
        ("aggregate", "lists"),  # the answer: the list with its owner's names
    ]
    assert await calls("GET", f"{url}/members", headers=bob.headers) == [
        AUTH,
        ("aggregate", "memberships"),  # with each member's user and the list's owner_id
    ]
    assert await calls("PATCH", url, json={"name": "Renamed"}, headers=alice.headers) == [
        AUTH,
        ("update", "lists"),  # owner, live and If-Match in the filter
        ("aggregate", "lists"),  # the answer
    ]
    assert await calls("DELETE", f"{url}/members/{bob.id}", headers=bob.headers) == [
        AUTH,
        ("update", "memberships"),  # ended (removed_at), never the owner's
        ("update", "lists"),  # member_count - 1, version + 1
    ]
    assert await calls("DELETE", url, headers=alice.headers) == [
        AUTH,
        ("update", "lists"),  # the tombstone decides (owner and If-Match in its filter)
        ("update", "todos"),  # its todos, as tombstones
        ("update", "memberships"),  # the members' memberships end
        ("update", "memberships"),  # then the owner's
        ("update", "lists"),  # the owner's list slot back
        ("delete", "invitations"),  # its pending invitations
    ]
