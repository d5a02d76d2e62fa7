"""Database round trips per request, for each request the benchmark (bench/) measures.

A pymongo command listener on the wire tier records every command the service sends while one
request runs. The expected lists are exact, so a new query on a hot path fails here instead of
silently costing every request a round trip; bench/REPORT.md says why each one is needed.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from bson import ObjectId
from httpx import ASGITransport, AsyncClient
from pwdlib.hashers.argon2 import Argon2Hasher
from pymongo import AsyncMongoClient, monitoring

from service.config import Settings
from service.db import MongoDatabase
from service.main import create_app
from tests.utils import DEFAULT_PASSWORD, UserAccount, create_account, create_todo

pytestmark = pytest.mark.wire_only  # mongomock has no command monitoring


class CommandRecorder(monitoring.CommandListener):
    """The names of the commands started, in order."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@dataclass
class Recorded:
    client: AsyncClient
    recorder: CommandRecorder
    database: MongoDatabase

    async def commands_of(self, method: str, url: str, **kwargs: Any) -> list[str]:
        """The database commands that one request caused (it must succeed)."""
        self.recorder.commands.clear()
        response = await self.client.request(method, url, **kwargs)
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
            yield Recorded(client, recorder, mongo[name])
    finally:
        await mongo.drop_database(name)
        await mongo.close()


async def _user_with_todos(recorded: Recorded, count: int) -> tuple[UserAccount, list[str]]:
    user = await create_account(recorded.client)
    todos = [await create_todo(recorded.client, user, f"todo {n}") for n in range(count)]
    return user, [todo["id"] for todo in todos]


async def test_health_makes_no_round_trip(recorded: Recorded) -> None:
    assert await recorded.commands_of("GET", "/api/health") == []


async def test_me_makes_one_round_trip(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    commands = await recorded.commands_of("GET", "/api/me", headers=user.headers)
    assert commands == ["find"]  # the user


@pytest.mark.parametrize("url", ["/api/todos?limit=20", "/api/mytodos?limit=20"])
async def test_listing_twenty_todos_makes_two_round_trips(recorded: Recorded, url: str) -> None:
    user, _ = await _user_with_todos(recorded, 25)
    commands = await recorded.commands_of("GET", url, headers=user.headers)
    assert commands == ["find", "find"]  # the user, then one batch of todos (no getMore)


async def test_creating_a_todo_makes_two_round_trips(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    commands = await recorded.commands_of(
        "POST", "/api/todos", json={"text": "new"}, headers=user.headers
    )
    assert commands == ["find", "insert"]


async def test_patching_a_todo_makes_two_round_trips(recorded: Recorded) -> None:
    user, [todo_id] = await _user_with_todos(recorded, 1)
    commands = await recorded.commands_of(
        "PATCH", f"/api/todos/{todo_id}", json={"completed": True}, headers=user.headers
    )
    assert commands == ["find", "findAndModify"]  # the owner filter is in the one update


async def test_logging_in_makes_one_round_trip(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    commands = await recorded.commands_of(
        "POST", "/api/token", data={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    assert commands == ["find"]  # the user by email; a current hash needs no update


async def test_logging_in_with_an_outdated_hash_adds_the_upgrade_write(recorded: Recorded) -> None:
    user, _ = await _user_with_todos(recorded, 0)
    # pwdlib's default Argon2 parameters (4 lanes), as stored before the service used 1 lane.
    outdated = Argon2Hasher().hash(DEFAULT_PASSWORD)
    assert ",p=4$" in outdated
    await recorded.database.users.update_one(
        {"_id": ObjectId(user.id)}, {"$set": {"hashed_password": outdated}}
    )
    commands = await recorded.commands_of(
        "POST", "/api/token", data={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    assert commands == ["find", "update"]
    stored = await recorded.database.users.find_one({"_id": ObjectId(user.id)})
    assert stored is not None
    assert ",p=1$" in stored["hashed_password"]
