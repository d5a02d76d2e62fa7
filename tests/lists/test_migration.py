"""The startup migration to lists (service/migrations.py), on databases written before lists:
users with a `todo_count` and no default list, todos with an `owner_id` and no list."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from beanie import PydanticObjectId
from fastapi import FastAPI

from service import migrations
from service.accounts import passwords
from service.db import MongoDatabase, init_db
from service.lists.models import DEFAULT_LIST_NAME
from service.migrations import (
    LISTS_MIGRATION,
    MIGRATIONS_COLLECTION,
    OWNER_TODO_INDEXES,
    migrate,
    migrate_to_lists,
)
from tests.utils import DEFAULT_PASSWORD, client_at, log_in

# Whole seconds: the database keeps milliseconds.
NOW = datetime.now(UTC).replace(microsecond=0)
SIGNED_UP = NOW - timedelta(days=300)
ASC, DESC = 1, -1
# The todos indexes of earlier versions, as they created them.
OLD_INDEXES: dict[str, list[tuple[str, int]]] = {
    "todos_live_by_created": [("owner_id", ASC), ("deleted_at", ASC), ("_id", DESC)],
    "todos_live_by_updated": [
        ("owner_id", ASC),
        ("deleted_at", ASC),
        ("updated_at", DESC),
        ("_id", DESC),
    ],
    "todos_live_by_due": [
        ("owner_id", ASC),
        ("deleted_at", ASC),
        ("due_rank", ASC),
        ("due_at", ASC),
        ("_id", ASC),
    ],
    "todos_live_by_priority": [
        ("owner_id", ASC),
        ("deleted_at", ASC),
        ("priority", DESC),
        ("_id", DESC),
    ],
    "todos_sync": [("owner_id", ASC), ("updated_at", ASC), ("_id", ASC)],
}


@dataclass
class OldData:
    """What an earlier version stored: per user, their live todos and tombstones."""

    users: dict[PydanticObjectId, str] = field(default_factory=dict)  # id -> email
    live: dict[PydanticObjectId, list[PydanticObjectId]] = field(default_factory=dict)
    tombstones: dict[PydanticObjectId, list[PydanticObjectId]] = field(default_factory=dict)

    @property
    def todos(self) -> dict[PydanticObjectId, PydanticObjectId]:
        """todo id -> owner id, tombstones included."""
        return {
            todo_id: owner
            for by_owner in (self.live, self.tombstones)
            for owner, ids in by_owner.items()
            for todo_id in ids
        }


def _old_user(email: str, todo_count: int | None) -> dict[str, Any]:
    user: dict[str, Any] = {
        "_id": PydanticObjectId(),
        "email": email,
        "fname": "Ada",
        "lname": "Lovelace",
        "hashed_password": passwords.password_hash.hash(DEFAULT_PASSWORD),
        "created_at": SIGNED_UP,
    }
    if todo_count is not None:
        user["todo_count"] = todo_count
    return user


def _old_todo(owner: PydanticObjectId, text: str, *, deleted: bool = False) -> dict[str, Any]:
    todo: dict[str, Any] = {
        "_id": PydanticObjectId(),
        "owner_id": owner,
        "created_at": SIGNED_UP,
        "updated_at": SIGNED_UP,
        "version": 1,
        "deleted_at": None,
    }
    if deleted:
        # Recent: the tombstone TTL index would remove it otherwise.
        todo.update(deleted_at=NOW - timedelta(hours=1), version=2)
    else:
        todo.update(text=text, notes="", completed=False, due_rank=1, priority=0, tags=[])
    return todo


async def seed_old_data(
    database: MongoDatabase, *, todos_per_user: tuple[int, ...] = (3, 0, 2)
) -> OldData:
    """Users as earlier versions stored them (the last without `todo_count`: stored before that
    counter existed), their todos (and one tombstone each), the owner_id indexes, and an
    idempotency record of a create."""
    old = OldData()
    for number, count in enumerate(todos_per_user):
        # The old counter, one high for the first user (a crash between reserving a slot and
        # inserting); none for the last.
        todo_count = None if number == len(todos_per_user) - 1 else count + (number == 0)
        user = _old_user(f"old{number}@example.com", todo_count)
        await database.users.insert_one(user)
        owner = user["_id"]
        old.users[owner] = user["email"]
        live = [_old_todo(owner, f"todo {n}") for n in range(count)]
        tombstone = _old_todo(owner, "", deleted=True)
        await database.todos.insert_many([*live, tombstone])
        old.live[owner] = [todo["_id"] for todo in live]
        old.tombstones[owner] = [tombstone["_id"]]
    for name, keys in OLD_INDEXES.items():
        await database.todos.create_index(keys, name=name)
    first_owner, first_todo = next(iter(old.live.items()))
    await database.idempotency_keys.insert_one(
        {
            "owner_id": first_owner,
            "key": "key-1",
            "request_hash": "0" * 64,
            "todo_id": first_todo[0],
            "response_body": {"id": str(first_todo[0]), "text": "todo 0"},
            "created_at": NOW,
        }
    )
    return old


async def assert_migrated(database: MongoDatabase, old: OldData) -> None:
    """Each old user has one default list counting their live todos, and its owner
    membership; every todo is in its owner's default list; nothing of the old shape is left."""
    for user_id in old.users:
        stored_lists = await database.lists.find({"owner_id": user_id}).to_list(None)
        assert len(stored_lists) == 1
        (default,) = stored_lists
        assert default["_id"] == user_id
        assert (default["name"], default["is_default"]) == (DEFAULT_LIST_NAME, True)
        assert default["todo_count"] == len(old.live[user_id])
        assert (default["member_count"], default["owned_lists"]) == (1, 1)
        assert default["deleted_at"] is None
        assert default["created_at"] == SIGNED_UP
        memberships = await database.memberships.find({"list_id": user_id}).to_list(None)
        assert [(m["user_id"], m["role"], m["removed_at"]) for m in memberships] == [
            (user_id, "owner", None)
        ]
    assert await database.users.count_documents({"todo_count": {"$exists": True}}) == 0
    assert await database.users.count_documents({}) == len(old.users)
    todos = {todo["_id"]: todo for todo in await database.todos.find().to_list(None)}
    assert todos.keys() == old.todos.keys()
    for todo_id, owner in old.todos.items():
        todo = todos[todo_id]
        assert "owner_id" not in todo
        assert (todo["list_id"], todo["created_by"], todo["sync_lists"]) == (owner, owner, [owner])
    # Tombstones stay tombstones (delta sync still reports them), in their owner's list.
    for owner, tombstones in old.tombstones.items():
        assert all(todos[todo_id]["deleted_at"] is not None for todo_id in tombstones)
        assert all(todos[todo_id]["text"] for todo_id in old.live[owner])
    indexes = await database.todos.index_information()
    assert not set(OWNER_TODO_INDEXES) & indexes.keys()
    (record,) = await database.idempotency_keys.find().to_list(None)
    answer = record["response_body"]
    assert answer["list_id"] == answer["created_by"] == str(record["owner_id"])


async def test_the_migration_gives_old_users_a_default_list_and_moves_their_todos(
    database: MongoDatabase,
) -> None:
    old = await seed_old_data(database)
    await init_db(database)
    await migrate(database, now=NOW)
    await assert_migrated(database, old)
    marker = await database[MIGRATIONS_COLLECTION].find_one({"_id": LISTS_MIGRATION})
    assert marker is not None
    assert marker["completed_at"] == NOW


async def test_the_migration_run_again_changes_nothing(database: MongoDatabase) -> None:
    old = await seed_old_data(database)
    await init_db(database)
    await migrate_to_lists(database, now=NOW)
    before = await _snapshot(database)
    # Past the done marker, and also the steps themselves run again.
    await migrate(database, now=NOW)
    await migrate_to_lists(database, now=NOW)
    assert await _snapshot(database) == before
    await assert_migrated(database, old)


async def test_two_workers_migrating_at_once_make_one_of_everything(
    database: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, so that the two runs interleave within each step.
    monkeypatch.setattr(migrations, "BATCH_SIZE", 2)
    old = await seed_old_data(database, todos_per_user=(5, 0, 4, 3, 1))
    await init_db(database)
    await asyncio.gather(migrate(database, now=NOW), migrate(database, now=NOW))
    await assert_migrated(database, old)
    assert await database[MIGRATIONS_COLLECTION].count_documents({}) == 1


async def _some_lists_made(database: MongoDatabase) -> None:
    """Interrupted in step 1: one batch of default lists made, todo_count still there."""
    users = await database.users.find().sort("_id").limit(1).to_list(None)
    await migrations._give_default_lists(database, users, now=NOW)


async def _step_one(database: MongoDatabase) -> None:
    """Interrupted after step 1 (every user has a default list, the todos haven't moved)."""
    await migrations.give_users_default_lists(database, now=NOW)


async def _some_todos_moved(database: MongoDatabase) -> None:
    """Interrupted in step 2: one batch of todos moved."""
    await migrations.give_users_default_lists(database, now=NOW)
    batch = await database.todos.find({}, {"_id": 1}).limit(2).to_list(None)
    await database.todos.update_many(
        {"_id": {"$in": [todo["_id"] for todo in batch]}}, migrations.INTO_DEFAULT_LIST
    )


async def _before_the_marker(database: MongoDatabase) -> None:
    """Interrupted after the last step, before the done marker."""
    await migrate_to_lists(database, now=NOW)


@pytest.mark.parametrize(
    "interrupted",
    [_some_lists_made, _step_one, _some_todos_moved, _before_the_marker],
    ids=["some-lists-made", "after-step-1", "in-step-2", "before-marker"],
)
async def test_an_interrupted_migration_is_completed_by_the_next_start(
    database: MongoDatabase, interrupted: Callable[[MongoDatabase], Awaitable[None]]
) -> None:
    old = await seed_old_data(database)
    await init_db(database)
    await interrupted(database)
    await migrate(database, now=NOW)
    await assert_migrated(database, old)


async def test_users_with_a_default_list_are_left_as_they_are(database: MongoDatabase) -> None:
    old = await seed_old_data(database, todos_per_user=(2,))
    await init_db(database)
    await migrate(database, now=NOW)
    (user_id,) = old.users
    # The list's count moves on with the user's todos; a later start doesn't reset it.
    await database.lists.update_one({"_id": user_id}, {"$set": {"todo_count": 7}})
    await migrate_to_lists(database, now=NOW)
    stored = await database.lists.find_one({"_id": user_id})
    assert stored is not None
    assert stored["todo_count"] == 7


async def test_indexes_of_today_are_kept_whatever_their_name(database: MongoDatabase) -> None:
    await init_db(database)
    # An index with an old name but a key on today's fields is not an old index.
    await database.todos.create_index([("list_id", ASC), ("updated_at", ASC)], name="todos_sync")
    assert await migrations.drop_owner_todo_indexes(database) == []
    assert "todos_sync" in await database.todos.index_information()


async def test_the_app_migrates_before_it_serves(app: FastAPI, database: MongoDatabase) -> None:
    old = await seed_old_data(database)
    async with LifespanManager(app) as manager, client_at(manager.app) as client:
        await assert_migrated(database, old)
        # An old user logs in and finds their todos.
        user_id, email = next(iter(old.users.items()))
        token = await log_in(client, email)
        response = await client.get("/api/todos", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        listed = {item["id"]: item for item in response.json()["items"]}
        assert listed.keys() == {str(todo_id) for todo_id in old.live[user_id]}
        assert {item["list_id"] for item in listed.values()} == {str(user_id)}


async def _snapshot(database: MongoDatabase) -> dict[str, list[dict[str, Any]]]:
    return {
        name: await database[name].find().sort("_id").to_list(None)
        for name in ("users", "lists", "memberships", "todos", "idempotency_keys")
    }
