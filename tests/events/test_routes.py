"""GET /api/todos/events: the SSE change feed, on a real uvicorn server (wire tier only)."""

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from beanie import PydanticObjectId
from httpx import ASGITransport, AsyncClient
from pymongo import AsyncMongoClient

from service.accounts.tokens import TokenSettings, create_access_token
from service.app import create_app
from service.config import Settings
from service.core.clock import utc_now
from service.db import init_db
from service.lists.models import Membership, TodoList
from tests.conftest import TEST_SECRET_KEY
from tests.live_server import EventReader, LiveServer, live_server
from tests.mongomock_compat import mock_database
from tests.utils import (
    UserAccount,
    create_account,
    create_list,
    create_todo,
    log_in,
    share_list,
)

pytestmark = pytest.mark.wire_only


@pytest.fixture(scope="module")
def server_database() -> str:
    """The live server's database: the tests make and share lists in it directly."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def server(
    wire_url: str, tmp_path_factory: pytest.TempPathFactory, server_database: str
) -> AsyncIterator[LiveServer]:
    async with live_server(
        wire_url,
        tmp_path_factory.mktemp("events"),
        MONGODB_DB=server_database,
        FEED_HEARTBEAT_SECONDS="0.3",
        # The 200-subscriber test opens them all as one user.
        MAX_STREAMS_PER_USER="200",
        # Every test signs up two or three users, from one address.
        SIGNUP_MAX_PER_IP="1000",
    ) as running:
        yield running


@pytest.fixture
async def lists_on_server(wire_url: str, server_database: str) -> AsyncIterator[None]:
    """The lists store (tests/utils: create_list, share_list) writes to the live server's
    database: lists are shared there as the lists and invitations routes would."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url, tz_aware=True)
    try:
        await init_db(mongo[server_database])
        yield
    finally:
        await mongo.close()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[AsyncClient]:
    """Over real HTTP to the live server (so `alice` and `bob` sign up there too)."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
        yield http


@pytest.fixture
def http(client: AsyncClient) -> AsyncClient:
    return client


@asynccontextmanager
async def events(
    http: AsyncClient,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[EventReader]:
    async with http.stream("GET", "/api/todos/events", headers=headers, params=params) as response:
        yield EventReader(response)


async def opened(reader: EventReader) -> str:
    """Check the stream opened with `ready`; its id."""
    return (await ready(reader))[0]


async def ready(reader: EventReader) -> tuple[str, dict[str, Any]]:
    """Check the stream opened with `ready`; its id and data."""
    assert reader.response.status_code == 200
    assert reader.response.headers["content-type"].startswith("text/event-stream")
    event = await reader.next_event()
    assert event is not None
    assert event.event == "ready"
    assert event.id
    return event.id, json.loads(event.data)


async def create(http: AsyncClient, user: UserAccount, text: str) -> dict[str, Any]:
    response = await http.post("/api/todos", json={"text": text}, headers=user.headers)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def expect(reader: EventReader, kind: str) -> tuple[str, dict[str, Any]]:
    event = await reader.next_event()
    assert event is not None, "the stream ended"
    assert event.event == kind, event
    assert event.id
    return event.id, json.loads(event.data)


async def expect_list_event(reader: EventReader, kind: str) -> dict[str, Any]:
    """The next event, a list event (which has no id)."""
    event = await reader.next_event()
    assert event is not None, "the stream ended"
    assert (event.event, event.id) == (kind, None), event
    data: dict[str, Any] = json.loads(event.data)
    return data


async def test_my_changes_arrive_in_order(http: AsyncClient, alice: UserAccount) -> None:
    async with events(http, alice.headers) as reader:
        await opened(reader)
        todo = await create(http, alice, "watch me")
        url = f"/api/todos/{todo['id']}"
        await http.patch(url, json={"completed": True}, headers=alice.headers)
        await http.delete(url, headers=alice.headers)
        _, created = await expect(reader, "created")
        assert created["id"] == todo["id"]
        assert created["text"] == "watch me"
        _, updated = await expect(reader, "updated")
        assert (updated["id"], updated["completed"], updated["version"]) == (todo["id"], True, 2)
        _, deleted = await expect(reader, "deleted")
        assert deleted == {
            "id": todo["id"],
            "list_id": alice.id,  # their default list
            "created_by": alice.id,
            "deleted": True,
            "deleted_at": deleted["deleted_at"],
            "version": 3,
        }


async def test_clear_completed_sends_a_deletion_per_todo(
    http: AsyncClient, alice: UserAccount
) -> None:
    async with events(http, alice.headers) as reader:
        await opened(reader)
        done = [
            (
                await http.post(
                    "/api/todos", json={"text": f"d{i}", "completed": True}, headers=alice.headers
                )
            ).json()["id"]
            for i in range(2)
        ]
        await http.post("/api/todos/clear-completed", headers=alice.headers)
        for _ in done:
            await expect(reader, "created")
        deleted = {(await expect(reader, "deleted"))[1]["id"] for _ in done}
        assert deleted == set(done)


async def test_other_users_changes_never_appear(
    http: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    async with events(http, alice.headers) as reader:
        await opened(reader)
        await create(http, bob, "bob's secret")
        mine = await create(http, alice, "mine")
        _, created = await expect(reader, "created")
        assert created["id"] == mine["id"]


async def test_resuming_with_last_event_id_has_no_gaps_or_repeats(
    http: AsyncClient, alice: UserAccount
) -> None:
    async with events(http, alice.headers) as reader:
        ready_id = await opened(reader)
    missed = [await create(http, alice, f"missed {i}") for i in range(3)]
    async with events(http, {**alice.headers, "Last-Event-ID": ready_id}) as reader:
        assert await opened(reader) == ready_id
        ids = []
        for todo in missed:
            event_id, created = await expect(reader, "created")
            assert created["id"] == todo["id"]
            ids.append(event_id)
        live = await create(http, alice, "live")
        _, created = await expect(reader, "created")
        assert created["id"] == live["id"]
    # Resuming from the middle gives only what came after it.
    async with events(http, {**alice.headers, "Last-Event-ID": ids[1]}) as reader:
        await opened(reader)
        _, created = await expect(reader, "created")
        assert created["id"] == missed[2]["id"]
        _, created = await expect(reader, "created")
        assert created["id"] == live["id"]
        other = await create(http, alice, "after")
        _, created = await expect(reader, "created")
        assert created["id"] == other["id"]


@pytest.mark.parametrize("last_event_id", ["not-hex!", "zz", "0", "00" * 40])
async def test_a_malformed_last_event_id_is_400(
    http: AsyncClient, alice: UserAccount, last_event_id: str
) -> None:
    response = await http.get(
        "/api/todos/events", headers={**alice.headers, "Last-Event-ID": last_event_id}
    )
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["detail"]


async def test_a_ticket_opens_the_stream_once(http: AsyncClient, alice: UserAccount) -> None:
    response = await http.post("/api/todos/events/ticket", headers=alice.headers)
    assert response.status_code == 201
    assert response.json()["expires_in"] == 60
    ticket = response.json()["ticket"]
    async with events(http, params={"ticket": ticket}) as reader:
        await opened(reader)
        todo = await create(http, alice, "via ticket")
        _, created = await expect(reader, "created")
        assert created["id"] == todo["id"]
    again = await http.get("/api/todos/events", params={"ticket": ticket})
    assert again.status_code == 401


async def test_tickets_never_reach_the_log(
    http: AsyncClient, alice: UserAccount, server: LiveServer
) -> None:
    ticket = (await http.post("/api/todos/events/ticket", headers=alice.headers)).json()["ticket"]
    async with events(http, params={"ticket": ticket}) as reader:
        await opened(reader)
    await http.get("/api/todos/events", params={"ticket": ticket})
    await http.get("/api/health")
    log = server.log_text()
    assert '"route": "/api/todos/events"' in log  # the service's access line: no query
    assert "ticket=" not in log
    assert ticket not in log


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({}, {"ticket": "made-up"}),
        ({"Authorization": "Bearer not-a-token"}, {}),
    ],
)
async def test_the_feed_needs_a_token_or_a_valid_ticket(
    http: AsyncClient, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = await http.get("/api/todos/events", headers=headers, params=params)
    assert response.status_code == 401


async def test_a_ticket_needs_a_token(http: AsyncClient) -> None:
    assert (await http.post("/api/todos/events/ticket")).status_code == 401


async def test_silence_gets_a_heartbeat_comment(http: AsyncClient, alice: UserAccount) -> None:
    async with events(http, alice.headers) as reader:
        await opened(reader)
        heartbeat = await reader.next()
        assert heartbeat is not None
        assert (heartbeat.event, heartbeat.comment) == ("comment", "heartbeat")


async def test_the_stream_ends_when_the_access_token_expires(
    http: AsyncClient, alice: UserAccount
) -> None:
    session_id = jwt.decode(alice.token, options={"verify_signature": False})["sid"]
    short = create_access_token(
        alice.id,
        session_id=session_id,
        settings=TokenSettings(
            key=TEST_SECRET_KEY,
            issuer="todo-service",
            audience="todo-service",
            expires=timedelta(seconds=2),
        ),
    )
    async with events(http, {"Authorization": f"Bearer {short}"}) as reader:
        await opened(reader)
        while (event := await reader.next()) is not None:
            assert event.event == "comment"


async def test_200_subscribers_neither_exhaust_the_pool_nor_slow_other_requests(
    http: AsyncClient, alice: UserAccount
) -> None:
    async with open_streams(http, alice, 200) as readers:
        # Other requests still go through while the streams are open (the default pool
        # has 100 connections: a stream holding one would starve them).
        responses = await asyncio.gather(
            *(http.get("/api/todos", headers=alice.headers) for _ in range(20))
        )
        assert {response.status_code for response in responses} == {200}
        todo = await create(http, alice, "for everyone")
        received = await asyncio.gather(*(expect(reader, "created") for reader in readers))
        assert {data["id"] for _, data in received} == {todo["id"]}


@asynccontextmanager
async def open_streams(
    http: AsyncClient, user: UserAccount, count: int
) -> AsyncIterator[list[EventReader]]:
    async with AsyncExitStack() as stack:
        readers: list[EventReader] = []
        # In waves: opening a stream takes a few database calls (session, stream slot).
        for wave in range(0, count, 25):
            opening = await asyncio.gather(
                *(
                    stack.enter_async_context(events(http, user.headers))
                    for _ in range(min(25, count - wave))
                )
            )
            await asyncio.gather(*(opened(reader) for reader in opening))
            readers.extend(opening)
        yield readers


async def test_shutdown_closes_open_streams_cleanly(wire_url: str, tmp_path: Path) -> None:
    async with (
        live_server(wire_url, tmp_path) as running,
        AsyncClient(base_url=running.url, timeout=30) as http,
    ):
        user = await create_account(http)
        async with open_streams(http, user, 3) as readers:
            running.process.send_signal(signal.SIGTERM)
            assert await asyncio.gather(*(reader.next() for reader in readers)) == [None] * 3
        assert await asyncio.wait_for(running.process.wait(), 15) == 0


async def test_a_resume_further_behind_than_the_limit_continues_over_reconnections(
    wire_url: str, tmp_path: Path
) -> None:
    async with (
        live_server(wire_url, tmp_path, FEED_CATCH_UP_LIMIT="2") as running,
        AsyncClient(base_url=running.url, timeout=30) as http,
    ):
        user = await create_account(http)
        async with events(http, user.headers) as reader:
            last_id = await opened(reader)
        todos = [await create(http, user, f"t{i}") for i in range(3)]
        received = []
        for expected in (2, 1):
            headers = {**user.headers, "Last-Event-ID": last_id}
            async with events(http, headers) as reader:
                await opened(reader)
                for _ in range(expected):
                    last_id, created = await expect(reader, "created")
                    received.append(created["id"])
                if expected == 2:
                    assert await reader.next_event() is None  # ends after the limit
        assert received == [todo["id"] for todo in todos]


# ---- lists: every list the caller can read ----


async def remove_member(list_id: str, member: UserAccount) -> None:
    """What DELETE /api/lists/{list_id}/members/{user_id} writes: the membership's tombstone
    and one member fewer on the list (its version bumped)."""
    now = utc_now()
    await Membership.get_pymongo_collection().update_one(
        {"list_id": PydanticObjectId(list_id), "user_id": PydanticObjectId(member.id)},
        {"$set": {"removed_at": now, "updated_at": now}},
    )
    await TodoList.get_pymongo_collection().update_one(
        {"_id": PydanticObjectId(list_id)},
        {"$inc": {"member_count": -1, "version": 1}, "$set": {"updated_at": now}},
    )


async def shared_with(
    http: AsyncClient, owner: UserAccount, member: UserAccount, role: str = "viewer"
) -> str:
    """A new list of `owner`'s, shared with `member`: its id."""
    list_id: str = (await create_list(http, owner))["id"]
    await share_list(http, owner, list_id, member, role)
    return list_id


async def test_ready_says_which_lists_the_stream_carries(
    http: AsyncClient, alice: UserAccount, bob: UserAccount, lists_on_server: None
) -> None:
    list_id = await shared_with(http, alice, bob)
    await create_list(http, alice, "alice's own")
    async with events(http, bob.headers) as reader:
        _, data = await ready(reader)
    assert data == {"resumed": False, "lists": sorted([bob.id, list_id])}


async def test_a_shared_lists_changes_reach_its_viewer_and_never_a_stranger(
    http: AsyncClient, alice: UserAccount, bob: UserAccount, lists_on_server: None
) -> None:
    carol = await create_account(http)
    list_id = await shared_with(http, alice, bob)
    async with events(http, bob.headers) as viewer, events(http, carol.headers) as stranger:
        await asyncio.gather(opened(viewer), opened(stranger))
        todo = await create_todo(http, alice, "shared", list_id=list_id)
        _, created = await expect(viewer, "created")
        assert (created["id"], created["list_id"], created["created_by"]) == (
            todo["id"],
            list_id,
            alice.id,
        )
        await http.patch(
            f"/api/todos/{todo['id']}", json={"completed": True}, headers=alice.headers
        )
        _, updated = await expect(viewer, "updated")
        assert (updated["id"], updated["completed"]) == (todo["id"], True)
        # The stranger's first event is their own todo: nothing of the shared list came.
        own = await create_todo(http, carol, "carol's", list_id=carol.id)
        _, created = await expect(stranger, "created")
        assert created["id"] == own["id"]


async def test_a_member_removed_mid_stream_gets_list_removed_then_nothing_of_that_list(
    http: AsyncClient, alice: UserAccount, bob: UserAccount, lists_on_server: None
) -> None:
    list_id = await shared_with(http, alice, bob, "editor")
    async with events(http, bob.headers) as reader:
        await opened(reader)
        await remove_member(list_id, bob)
        assert await expect_list_event(reader, "list_removed") == {"id": list_id}
        await create_todo(http, alice, "after the removal", list_id=list_id)
        # The stream stays open for their other lists.
        own = await create_todo(http, bob, "bob's", list_id=bob.id)
        _, created = await expect(reader, "created")
        assert created["id"] == own["id"]


async def test_the_members_who_remain_are_told_who_went(
    http: AsyncClient, alice: UserAccount, bob: UserAccount, lists_on_server: None
) -> None:
    list_id = await shared_with(http, alice, bob)
    async with events(http, alice.headers) as reader:
        await opened(reader)
        await remove_member(list_id, bob)
        # Who went, then the member count's change (the list's version), as written.
        removed = await expect_list_event(reader, "member_removed")
        assert removed == {"list_id": list_id, "user_id": bob.id}
        updated = await expect_list_event(reader, "list_updated")
        assert (updated["id"], updated["member_count"], updated["version"]) == (list_id, 1, 3)


async def test_a_member_added_mid_stream_receives_the_list_without_reconnecting(
    http: AsyncClient, alice: UserAccount, bob: UserAccount, lists_on_server: None
) -> None:
    list_id = (await create_list(http, alice))["id"]
    async with events(http, bob.headers) as reader:
        _, data = await ready(reader)
        assert data["lists"] == [bob.id]
        await share_list(http, alice, list_id, bob, "viewer")
        added = await expect_list_event(reader, "member_added")
        assert added == {"list_id": list_id, "user_id": bob.id, "role": "viewer"}
        todo = await create_todo(http, alice, "for the new member", list_id=list_id)
        _, created = await expect(reader, "created")
        assert (created["id"], created["list_id"]) == (todo["id"], list_id)


async def test_a_todo_moved_out_of_a_readable_list_is_deleted_with_the_list_it_left(
    http: AsyncClient, alice: UserAccount, bob: UserAccount, lists_on_server: None
) -> None:
    list_id = await shared_with(http, alice, bob)
    todo = await create_todo(http, alice, "moving", list_id=list_id)
    url = f"/api/todos/{todo['id']}"
    async with events(http, bob.headers) as viewer, events(http, alice.headers) as owner:
        await asyncio.gather(opened(viewer), opened(owner))
        # Into alice's default list, which bob can't read.
        moved = await http.patch(url, json={"list_id": alice.id}, headers=alice.headers)
        assert moved.status_code == 200, moved.text
        _, deleted = await expect(viewer, "deleted")
        assert deleted == {
            "id": todo["id"],
            "list_id": list_id,  # the list it left, never the one it went to
            "created_by": alice.id,
            "deleted": True,
            "deleted_at": deleted["deleted_at"],
            "version": 2,
        }
        # alice reads both lists: an update, in its new list.
        _, updated = await expect(owner, "updated")
        assert (updated["id"], updated["list_id"]) == (todo["id"], alice.id)
        # Moved back in: it appears in bob's view again.
        back = await http.patch(url, json={"list_id": list_id}, headers=alice.headers)
        assert back.status_code == 200, back.text
        _, created = await expect(viewer, "created")
        assert (created["id"], created["list_id"], created["version"]) == (
            todo["id"],
            list_id,
            3,
        )


async def test_a_resumed_stream_catches_up_on_the_lists_the_caller_reads_only(
    http: AsyncClient, alice: UserAccount, bob: UserAccount, lists_on_server: None
) -> None:
    list_id = await shared_with(http, alice, bob)
    async with events(http, bob.headers) as reader:
        last_id = await opened(reader)
    await create_todo(http, alice, "alice's own", list_id=alice.id)
    shared = await create_todo(http, alice, "shared", list_id=list_id)
    async with events(http, {**bob.headers, "Last-Event-ID": last_id}) as reader:
        _, data = await ready(reader)
        assert data == {"resumed": True, "lists": sorted([bob.id, list_id])}
        _, created = await expect(reader, "created")
        assert created["id"] == shared["id"]
        own = await create_todo(http, bob, "live", list_id=bob.id)
        _, created = await expect(reader, "created")
        assert created["id"] == own["id"]


# ---- sessions ending ----


async def login(http: AsyncClient, user: UserAccount) -> UserAccount:
    """Another session of the same user."""
    token = await log_in(http, user.email, user.password)
    return UserAccount(id=user.id, email=user.email, password=user.password, token=token)


async def ticket_for(http: AsyncClient, user: UserAccount) -> str:
    response = await http.post("/api/todos/events/ticket", headers=user.headers)
    assert response.status_code == 201
    ticket: str = response.json()["ticket"]
    return ticket


async def revoked(reader: EventReader) -> None:
    """Within 2 s: `event: revoked` (no id), then the end of the stream."""
    reader.wait = REVOCATION_SECONDS
    event = await reader.next_event()
    assert event is not None, "the stream ended without saying why"
    assert (event.event, event.id) == ("revoked", None)
    assert "log in again" in json.loads(event.data)["detail"]
    assert await reader.next() is None


REVOCATION_SECONDS = 2.0


async def test_logout_ends_the_sessions_streams_with_revoked(
    http: AsyncClient, alice: UserAccount
) -> None:
    other_session = await login(http, alice)
    ticket = await ticket_for(http, alice)
    async with (
        events(http, alice.headers) as by_token,
        events(http, params={"ticket": ticket}) as by_ticket,
        events(http, other_session.headers) as untouched,
    ):
        for reader in (by_token, by_ticket, untouched):
            await opened(reader)
        assert (await http.post("/api/logout", headers=alice.headers)).status_code == 204
        await asyncio.gather(revoked(by_token), revoked(by_ticket))
        # The user's other session still gets its changes.
        todo = await create(http, other_session, "still here")
        _, created = await expect(untouched, "created")
        assert created["id"] == todo["id"]


async def test_a_password_change_ends_every_stream_of_the_user(
    http: AsyncClient, alice: UserAccount
) -> None:
    other_session = await login(http, alice)
    async with events(http, alice.headers) as mine, events(http, other_session.headers) as other:
        await asyncio.gather(opened(mine), opened(other))
        response = await http.put(
            "/api/me/password",
            json={"current_password": alice.password, "new_password": "another good password"},
            headers=alice.headers,
        )
        assert response.status_code == 204
        await asyncio.gather(revoked(mine), revoked(other))


async def test_deleting_the_account_ends_its_streams(http: AsyncClient, alice: UserAccount) -> None:
    async with events(http, alice.headers) as reader:
        await opened(reader)
        response = await http.request(
            "DELETE", "/api/me", json={"password": alice.password}, headers=alice.headers
        )
        assert response.status_code == 204
        await revoked(reader)


async def test_a_ticket_redeemed_after_logout_is_401(http: AsyncClient, alice: UserAccount) -> None:
    ticket = await ticket_for(http, alice)
    assert (await http.post("/api/logout", headers=alice.headers)).status_code == 204
    response = await http.get("/api/todos/events", params={"ticket": ticket})
    assert response.status_code == 401


async def test_a_ticket_redeemed_after_the_account_is_deleted_is_401(
    http: AsyncClient, alice: UserAccount
) -> None:
    ticket = await ticket_for(http, alice)
    await http.request(
        "DELETE", "/api/me", json={"password": alice.password}, headers=alice.headers
    )
    response = await http.get("/api/todos/events", params={"ticket": ticket})
    assert response.status_code == 401


# ---- several workers: one database, a change feed each ----


@asynccontextmanager
async def two_workers(
    wire_url: str, tmp_path: Path, **settings: str
) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    """Two server processes on one database, as two workers (or replicas) are."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with (
        live_server(wire_url, tmp_path / "a", MONGODB_DB=database, **settings) as first,
        live_server(wire_url, tmp_path / "b", MONGODB_DB=database, **settings) as second,
        AsyncClient(base_url=first.url, timeout=30, limits=limits) as one,
        AsyncClient(base_url=second.url, timeout=30, limits=limits) as other,
    ):
        yield one, other


async def test_a_logout_on_one_worker_ends_streams_on_another(
    wire_url: str, tmp_path: Path
) -> None:
    async with two_workers(wire_url, tmp_path) as (one, other):
        user = await create_account(one)
        async with events(other, user.headers) as reader:
            await opened(reader)
            assert (await one.post("/api/logout", headers=user.headers)).status_code == 204
            await revoked(reader)


async def test_a_user_has_at_most_max_streams_across_workers(wire_url: str, tmp_path: Path) -> None:
    async with two_workers(wire_url, tmp_path, MAX_STREAMS_PER_USER="3") as (one, other):
        user = await create_account(one)
        async with AsyncExitStack() as stack:
            # Six at once, spread over both workers: exactly three open.
            readers = await asyncio.gather(
                *(
                    stack.enter_async_context(events(http, user.headers))
                    for http in [one, other] * 3
                )
            )
            statuses = sorted(reader.response.status_code for reader in readers)
            assert statuses == [200, 200, 200, 429, 429, 429]
            refused = next(reader for reader in readers if reader.response.status_code == 429)
            assert refused.response.headers["Retry-After"].isdigit()
            assert "3 live feed streams" in (await refused.response.aread()).decode()
        # Closed streams free their slots.
        for http in (one, other, one):
            async with events(http, user.headers) as reader:
                await opened(reader)


async def test_a_worker_serves_at_most_max_streams_per_worker(
    wire_url: str, tmp_path: Path
) -> None:
    async with (
        live_server(wire_url, tmp_path, MAX_STREAMS_PER_WORKER="2") as running,
        AsyncClient(base_url=running.url, timeout=30) as http,
    ):
        alice, bob = await create_account(http), await create_account(http)
        async with events(http, alice.headers) as first, events(http, bob.headers) as second:
            await asyncio.gather(opened(first), opened(second))
            response = await http.get("/api/todos/events", headers=alice.headers)
            assert response.status_code == 503
            assert response.headers["Retry-After"].isdigit()
        async with events(http, bob.headers) as reader:
            await opened(reader)


# ---- without change streams ----


async def test_without_change_streams_the_feed_is_503(settings: Settings) -> None:
    app = create_app(settings, database=mock_database("no-change-streams"))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://test") as client,
    ):
        user = await create_account(client)
        response = await client.get("/api/todos/events", headers=user.headers)
        assert response.status_code == 503
        assert "change streams" in response.json()["detail"]
        ticket = await client.post("/api/todos/events/ticket", headers=user.headers)
        assert ticket.status_code == 201
