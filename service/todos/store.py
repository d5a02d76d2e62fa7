"""Queries on single todos. Every one filters on owner_id: nobody reaches another user's todos.

Listings (many todos, filtered and paged) are in listing.py. A todo is read and returned as
its raw document (StoredTodo); TodoPublic.from_stored is its one conversion to the API shape.
"""

import contextlib
from datetime import datetime, timedelta
from typing import Any

import pymongo
from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure, PyMongoError

from service.accounts.models import User
from service.core.budget import budgeted
from service.core.clock import utc_now
from service.core.store import update_then_read
from service.errors import Conflict
from service.todos.dates import due_instant
from service.todos.models import IdempotencyKey, StoredTodo, Todo

# Normal reads never see tombstones (deleted todos kept for delta sync).
LIVE: dict[str, Any] = {"deleted_at": None}


# ---- the owner's todo slots (MAX_TODOS_PER_USER) ----
# The count of a user's live todos lives on the user document (`users.todo_count`), not in a
# count of the todos collection: without transactions, only a conditional update of one
# document can check the limit and take a slot atomically (count-then-insert would let
# parallel creates all pass the check). Creates take a slot first; deletes give theirs back.


async def _reserve_todo_slot(owner_id: PydanticObjectId, max_todos: int) -> bool:
    """Take one of the owner's `max_todos` slots; False if they are all taken."""
    # `$not: {$gte}` also matches users stored before todo_count existed.
    reserved = await User.get_pymongo_collection().update_one(
        {"_id": owner_id, "todo_count": {"$not": {"$gte": max_todos}}},
        {"$inc": {"todo_count": 1}},
    )
    return reserved.modified_count == 1


async def _release_todo_slots(owner_id: PydanticObjectId, count: int) -> None:
    """Give back `count` of the owner's todo slots (after deletes, or a failed insert)."""
    await User.get_pymongo_collection().update_one(
        {"_id": owner_id, "todo_count": {"$gte": count}}, {"$inc": {"todo_count": -count}}
    )


# ---- todos ----


def _derived_due(due: str | None) -> dict[str, Any]:
    """The stored fields that follow from `due`: its instant, and its rank for sorting."""
    if due is None:
        return {"due": None, "due_at": None, "due_rank": 1}
    return {"due": due, "due_at": due_instant(due), "due_rank": 0}


@budgeted
async def create_todo(
    *,
    owner_id: PydanticObjectId,
    fields: dict[str, Any],
    max_todos: int,
    todo_id: PydanticObjectId | None = None,
) -> StoredTodo:
    """Insert a todo owned by owner_id with the writable `fields` (a validated TodoCreate);
    Conflict if the owner already has `max_todos` live todos."""
    if not await _reserve_todo_slot(owner_id, max_todos):
        raise Conflict(f"Todo limit reached: at most {max_todos} todos; delete some first.")
    now = utc_now()
    values = {**fields, **_derived_due(fields.get("due"))}
    # Built as a Todo for its defaults and checks, inserted as the document it dumps to.
    stored: dict[str, Any] = Todo(
        id=todo_id or PydanticObjectId(),
        owner_id=owner_id,
        completed_at=now if values.get("completed") else None,
        created_at=now,
        updated_at=now,
        **values,
    ).model_dump(by_alias=True)
    try:
        await Todo.get_pymongo_collection().insert_one(stored)
    except Exception:
        # Best effort: if the database is gone this fails too, and the count stays one high
        # (the limit gets stricter by one, never looser).
        with contextlib.suppress(PyMongoError):
            await _release_todo_slots(owner_id, 1)
        raise
    return stored


@budgeted
async def get_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> StoredTodo | None:
    """The owner's live todo with this id; None for anyone else's (or a tombstone)."""
    stored: StoredTodo | None = await Todo.get_pymongo_collection().find_one(
        _one_todo(owner_id, todo_id, None)
    )
    return stored


def _one_todo(
    owner_id: PydanticObjectId, todo_id: PydanticObjectId, versions: list[int] | None
) -> dict[str, Any]:
    query: dict[str, Any] = {"_id": todo_id, "owner_id": owner_id, **LIVE}
    if versions is not None:
        query["version"] = {"$in": versions}
    return query


def _update_pipeline(changes: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """One $set stage applying `changes`; expressions read the stored values before it.

    A pipeline (rather than a plain $set) lets `completed_at` depend on the stored `completed`
    in the same atomic write. Values go in $literal, so text like "$5" stays text.
    """
    values = dict(changes)
    if "due" in values:
        values.update(_derived_due(values["due"]))
    stage: dict[str, Any] = {name: {"$literal": value} for name, value in values.items()}
    if "completed" in values:
        # Set when completed becomes true (kept if it already was), cleared when false.
        stage["completed_at"] = (
            {"$cond": [{"$eq": ["$completed", True]}, "$completed_at", {"$literal": now}]}
            if values["completed"]
            else {"$literal": None}
        )
    stage["updated_at"] = {"$literal": now}
    stage["version"] = {"$add": ["$version", 1]}
    return [{"$set": stage}]


@budgeted
async def update_todo(
    *,
    owner_id: PydanticObjectId,
    todo_id: PydanticObjectId,
    changes: dict[str, Any],
    versions: list[int] | None = None,
) -> StoredTodo | None:
    """Apply `changes` to the owner's live todo in one atomic update and bump its version.

    With `versions`, only if the stored version is one of them: the check is part of the
    update's filter, so of two writers holding the same version exactly one wins.
    None if nothing matched.
    """
    matched, stored = await update_then_read(
        Todo.get_pymongo_collection(),
        _one_todo(owner_id, todo_id, versions),
        _update_pipeline(changes, utc_now()),
        read=_one_todo(owner_id, todo_id, None),
    )
    return stored if matched else None


# What a tombstone keeps: its id, owner_id, version and timestamps (created_at, updated_at,
# deleted_at), all that delta sync and the feed's `deleted` event report. Everything the user
# wrote goes in the same update as the deletion: a deleted todo's content is not retained.
TOMBSTONE_DROPS = [
    "text",
    "notes",
    "completed",
    "completed_at",
    "due",
    "due_at",
    "due_rank",
    "priority",
    "tags",
]


def _tombstone_update(now: datetime) -> dict[str, Any]:
    return {
        "$set": {"deleted_at": now, "updated_at": now},
        "$inc": {"version": 1},
        "$unset": dict.fromkeys(TOMBSTONE_DROPS, ""),
    }


@budgeted
async def delete_todo(
    *, owner_id: PydanticObjectId, todo_id: PydanticObjectId, versions: list[int] | None = None
) -> bool:
    """Delete the owner's todo (if at one of `versions`, when given); False if none matched.

    The todo stays as a tombstone (deleted_at set, version bumped, its content removed) so that
    delta sync and the change feed see the deletion; a TTL index removes it after the
    retention period.
    """
    result = await Todo.get_pymongo_collection().update_one(
        _one_todo(owner_id, todo_id, versions), _tombstone_update(utc_now())
    )
    if result.modified_count != 1:
        return False
    await _release_todo_slots(owner_id, 1)
    return True


@budgeted
async def clear_completed(*, owner_id: PydanticObjectId) -> int:
    """Delete (as tombstones) every completed todo of the owner; how many there were."""
    result = await Todo.get_pymongo_collection().update_many(
        {"owner_id": owner_id, "completed": True, **LIVE}, _tombstone_update(utc_now())
    )
    if result.modified_count:
        await _release_todo_slots(owner_id, result.modified_count)
    return result.modified_count


TOMBSTONE_TTL_INDEX = "todos_tombstone_ttl"


@budgeted
async def ensure_tombstone_ttl(*, retention: timedelta) -> None:
    """Create (or retune) the TTL index that removes tombstones after `retention`."""
    seconds = int(retention.total_seconds())
    collection = Todo.get_pymongo_collection()
    try:
        await collection.create_index(
            [("deleted_at", pymongo.ASCENDING)],
            name=TOMBSTONE_TTL_INDEX,
            expireAfterSeconds=seconds,
        )
    except OperationFailure as exc:
        if exc.code not in {85, 86}:  # IndexOptionsConflict, IndexKeySpecsConflict
            raise
        await collection.database.command(
            "collMod",
            collection.name,
            index={"name": TOMBSTONE_TTL_INDEX, "expireAfterSeconds": seconds},
        )


@budgeted
async def delete_todos_of(
    *, owner_id: PydanticObjectId, session: AsyncClientSession | None
) -> None:
    """Delete every todo of the owner, and first their idempotency records: each holds a copy
    of the todo it created. In `session`'s transaction if given."""
    for collection in (IdempotencyKey.get_pymongo_collection(), Todo.get_pymongo_collection()):
        await collection.delete_many({"owner_id": owner_id}, session=session)
