"""Real database faults on the wire tier: SecantusDB as a separate process, stopped, killed and
restarted on the same port and data directory while the service keeps running."""

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from pymongo import MongoClient, monitoring

from service.app import create_app
from service.config import Settings
from service.db import create_client
from service.embedded import EmbeddedDatabase
from tests.utils import UserAccount, app_client, create_account, create_todo, log_in

# The service's promise while the database is down: an answer within this many seconds.
ANSWER_WITHIN_SECONDS = 3.0
# And it stops within this long with the database down (closing the client takes at most 1 s).
SHUT_DOWN_WITHIN_SECONDS = 3.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedDatabase]:
    """A file-backed SecantusDB that syncs every commit, as production runs it."""
    with EmbeddedDatabase(tmp_path / "db", sync_on_commit=True) as db:
        yield db


def restart(server: EmbeddedDatabase) -> EmbeddedDatabase:
    """Start a new server process on the same port and data directory."""
    again = EmbeddedDatabase(server.storage_path, port=server.port, sync_on_commit=True)
    again.start()
    return again


def settings_for(settings: Settings, server: EmbeddedDatabase, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "mongodb_url": server.url,
            "mongodb_db": f"test_{uuid.uuid4().hex[:12]}",
            "mongodb_startup_timeout": 5.0,
            **changes,
        }
    )


async def timed_get(client: AsyncClient, url: str, **kwargs: Any) -> tuple[int, float, Any]:
    started = time.monotonic()
    response = await client.get(url, **kwargs)
    return response.status_code, time.monotonic() - started, response


async def test_database_outage_gets_503_quickly_and_the_service_recovers(
    settings: Settings, server: EmbeddedDatabase
) -> None:
    async with app_client(create_app(settings_for(settings, server))) as client:
        user = await create_account(client)
        await create_todo(client, user)
        assert (await client.get("/api/ready")).json() == {"status": "ready"}

        server.stop()
        for url in ["/api/todos", "/api/me", "/api/todos", "/api/mytodos"]:
            status, seconds, response = await timed_get(client, url, headers=user.headers)
            assert status == 503
            assert response.json() == {"detail": "Database unavailable"}
            assert int(response.headers["Retry-After"]) > 0
            assert seconds < ANSWER_WITHIN_SECONDS
        signup = await client.post(
            "/api/users",
            json={"email": "late@example.com", "fname": "A", "lname": "B", "password": "x" * 12},
        )
        assert signup.status_code == 503
        status, seconds, response = await timed_get(client, "/api/ready")
        assert status == 503
        assert response.json()["status"] == "unavailable"
        assert "Retry-After" in response.headers
        assert seconds < ANSWER_WITHIN_SECONDS
        status, seconds, _ = await timed_get(client, "/api/health")
        assert status == 200
        assert seconds < 1.0  # no database involved: far below the 503s above

        again = restart(server)
        try:
            # No restart of the service: the driver reconnects by itself.
            response = await client.get("/api/todos", headers=user.headers)
            assert response.status_code == 200, response.text
            assert len(response.json()["items"]) == 1
            assert (await client.get("/api/ready")).status_code == 200
            await create_todo(client, user, "after the outage")
        finally:
            again.stop()


async def twenty_at_once(client: AsyncClient, user: UserAccount) -> set[int]:
    """The status codes of 20 parallel requests that need the database."""
    responses = await asyncio.gather(
        *(client.get("/api/todos", headers=user.headers) for _ in range(20))
    )
    return {response.status_code for response in responses}


async def test_parallel_requests_during_an_outage_all_get_503_in_time(
    settings: Settings, server: EmbeddedDatabase
) -> None:
    async with app_client(create_app(settings_for(settings, server))) as client:
        user = await create_account(client)
        server.stop()
        started = time.monotonic()
        assert await twenty_at_once(client, user) == {503}
        assert time.monotonic() - started < ANSWER_WITHIN_SECONDS


async def test_the_service_shuts_down_promptly_while_the_database_is_down(
    settings: Settings, server: EmbeddedDatabase
) -> None:
    async with app_client(create_app(settings_for(settings, server))) as client:
        user = await create_account(client)
        server.stop()
        # The parallel failures matter: they are what made the driver lose the cancellation
        # of the change feed's task, which then retried, and the shutdown waited, forever.
        assert await twenty_at_once(client, user) == {503}
        started = time.monotonic()
    assert time.monotonic() - started < SHUT_DOWN_WITHIN_SECONDS


async def test_acknowledged_todos_survive_sigkill_of_the_database(
    settings: Settings, server: EmbeddedDatabase
) -> None:
    test_settings = settings_for(settings, server)
    async with app_client(create_app(test_settings)) as client:
        user = await create_account(client)
        for number in range(200):
            await create_todo(client, user, f"todo {number}")
        server.kill()  # SIGKILL: the server gets no chance to flush anything

    again = restart(server)
    try:
        async with app_client(create_app(test_settings)) as client:
            response = await client.get("/api/mytodos?limit=1000", headers=user.headers)
            assert response.status_code == 200
            texts = {todo["text"] for todo in response.json()}
            assert texts == {f"todo {number}" for number in range(200)}
    finally:
        again.stop()


class WriteCommands(monitoring.CommandListener):
    """Records the write concern of every write command sent.

    A write inside a transaction has none of its own (the driver may not send one): it is
    durable as its commitTransaction is, so that one is recorded instead.
    """

    WRITES = frozenset({"insert", "update", "delete", "findAndModify"})

    def __init__(self) -> None:
        self.write_concerns: list[tuple[str, Any]] = []
        self.in_transactions: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name, concern = event.command_name, event.command.get("writeConcern")
        if name in self.WRITES and event.command.get("autocommit") is False:
            self.in_transactions.append((name, concern))
        elif name in self.WRITES or name == "commitTransaction":
            self.write_concerns.append((name, concern))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def _write_through_the_api(settings: Settings, listener: WriteCommands) -> None:
    mongo = create_client(settings, event_listeners=[listener])
    try:
        app = create_app(settings, database=mongo[settings.mongodb_db])
        async with app_client(app) as client:
            user = await create_account(client)
            todo = await create_todo(client, user)
            url = f"/api/todos/{todo['id']}"
            assert (
                await client.patch(url, json={"completed": True}, headers=user.headers)
            ).is_success
            body = {"text": "replaced", "completed": False}
            assert (await client.put(url, json=body, headers=user.headers)).is_success
            assert (await client.delete(url, headers=user.headers)).status_code == 204
            # A failed login is counted; the next successful one clears the count.
            wrong = {"username": user.email, "password": "not the password"}
            assert (await client.post("/api/token", data=wrong)).status_code == 401
            await log_in(client, user.email, user.password)
            ticket = await client.post("/api/todos/events/ticket", headers=user.headers)
            assert ticket.status_code == 201
            # Redeeming a ticket takes it in one findAndModify (an unknown one here: a valid
            # one would open a stream that doesn't end).
            redeem = await client.get("/api/todos/events", params={"ticket": "unknown"})
            assert redeem.status_code == 401
            deletion = {"password": user.password}
            deleted = await client.request("DELETE", "/api/me", json=deletion, headers=user.headers)
            assert deleted.status_code == 204
        await mongo.drop_database(settings.mongodb_db)
    finally:
        await mongo.close()


async def test_every_write_carries_majority_journaled_write_concern(
    settings: Settings, server: EmbeddedDatabase
) -> None:
    listener = WriteCommands()
    await _write_through_the_api(settings_for(settings, server), listener)
    # insert: signup, login (the session), create, the ticket; update: login throttling, the
    # todo-count reservation, PATCH, PUT and DELETE (a tombstone); delete: clearing the failed
    # logins; findAndModify: redeeming the ticket; a transaction: deleting the account.
    commands = {name for name, _ in listener.write_concerns}
    assert commands == {"insert", "update", "findAndModify", "delete", "commitTransaction"}
    for name, concern in listener.write_concerns:
        assert concern == {"w": "majority", "j": True}, name
    assert {name for name, _ in listener.in_transactions} == {"delete"}
    assert all(concern is None for _, concern in listener.in_transactions)


async def test_write_concern_is_configurable(settings: Settings, server: EmbeddedDatabase) -> None:
    listener = WriteCommands()
    changed = settings_for(settings, server, mongodb_write_concern="1", mongodb_journal=False)
    await _write_through_the_api(changed, listener)
    assert {name for name, _ in listener.write_concerns} >= {"insert", "commitTransaction"}
    for name, concern in listener.write_concerns:
        assert concern == {"w": 1, "j": False}, name


@pytest.fixture
def failpoint_server(tmp_path: Path) -> Iterator[EmbeddedDatabase]:
    """A SecantusDB that accepts configureFailPoint, to inject driver errors."""
    with EmbeddedDatabase(
        tmp_path / "db", sync_on_commit=False, extra_args=["--enable-test-commands"]
    ) as db:
        yield db


def fail_command(server: EmbeddedDatabase, command: str, mode: Any, **data: Any) -> None:
    """Make the server fail `command` (mode: {"times": n}, "alwaysOn" or "off")."""
    admin: MongoClient[dict[str, Any]] = MongoClient(server.url)
    with admin:
        admin.admin.command(
            "configureFailPoint",
            "failCommand",
            mode=mode,
            data={"failCommands": [command], **data},
        )


# What GET /api/me sends: the current user is one aggregate on sessions with a $lookup of the
# user. (The change feed opens its stream with an aggregate too, but only at startup and when
# it resumes: while the database is up it only sends getMore.)
ME_COMMAND = "aggregate"


async def test_other_driver_errors_are_a_generic_500_logged_with_the_request_id(
    settings: Settings, failpoint_server: EmbeddedDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_client(create_app(settings_for(settings, failpoint_server))) as client:
        user = await create_account(client)
        fail_command(
            failpoint_server, ME_COMMAND, {"times": 1}, errorCode=2, errmsg="driver secret text"
        )
        with caplog.at_level(logging.ERROR):
            response = await client.get(
                "/api/me", headers={**user.headers, "X-Request-ID": "trace-500"}
            )
        assert response.status_code == 500
        assert response.json() == {"detail": "Internal server error"}
        assert "driver secret text" not in response.text
        (record,) = [r for r in caplog.records if r.message == "database error"]
        assert record.request_id == "trace-500"  # type: ignore[attr-defined]  # via extra=
        assert record.exc_info is not None
        # The next request is fine: nothing was left broken.
        assert (await client.get("/api/me", headers=user.headers)).status_code == 200


async def test_connections_dropped_until_the_budget_is_spent_are_a_503(
    settings: Settings, failpoint_server: EmbeddedDatabase
) -> None:
    async with app_client(create_app(settings_for(settings, failpoint_server))) as client:
        user = await create_account(client)
        # Every time: within a pymongo.timeout() the driver retries reads until the deadline,
        # so a connection dropped once or twice is absorbed without the client noticing.
        fail_command(failpoint_server, ME_COMMAND, "alwaysOn", closeConnection=True)
        status, seconds, response = await timed_get(client, "/api/me", headers=user.headers)
        assert status == 503
        assert response.json() == {"detail": "Database unavailable"}
        assert seconds < ANSWER_WITHIN_SECONDS
        fail_command(failpoint_server, ME_COMMAND, "off")
        assert (await client.get("/api/me", headers=user.headers)).status_code == 200
