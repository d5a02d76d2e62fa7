"""Queries on todos. Every one filters on owner_id: nobody reaches another user's todos."""

import contextlib
from typing import Any

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from beanie.odm.queries.update import UpdateResponse
from pymongo.errors import PyMongoError

from service.budget import budgeted
from service.exceptions import Conflict
from service.models import Todo, User, utc_now


@budgeted
async def create_todo(
    *, owner_id: PydanticObjectId, text: str, completed: bool, max_todos: int
) -> Todo:
    """Insert a todo owned by owner_id; Conflict if they already have `max_todos` live todos."""
    # The owner's todo_count is the limit's source of truth: a conditional $inc reserves a
    # slot atomically (count-then-insert would let parallel creates all pass the check).
    # `$not: {$gte}` also matches users stored before todo_count existed.
    users = User.get_pymongo_collection()
    reserved = await users.update_one(
        {"_id": owner_id, "todo_count": {"$not": {"$gte": max_todos}}},
        {"$inc": {"todo_count": 1}},
    )
    if reserved.modified_count != 1:
        raise Conflict(f"Todo limit reached: at most {max_todos} todos; delete some first.")
    todo = Todo(owner_id=owner_id, text=text, completed=completed)
    try:
        await todo.insert()
    except Exception:
        # Best effort: if the database is gone this fails too, and the count stays one high
        # (the limit gets stricter by one, never looser).
        with contextlib.suppress(PyMongoError):
            await _release_slot(owner_id)
        raise
    return todo


async def _release_slot(owner_id: PydanticObjectId) -> None:
    """Give back one of the owner's todo slots (after a delete, or a failed insert)."""
    await User.get_pymongo_collection().update_one(
        {"_id": owner_id, "todo_count": {"$gt": 0}}, {"$inc": {"todo_count": -1}}
    )


@budgeted
async def list_todos(
    *, owner_id: PydanticObjectId, limit: int, before: PydanticObjectId | None = None
) -> list[Todo]:
    """Up to `limit` of the owner's todos, newest first, older than `before` if given."""
    query: dict[str, Any] = {"owner_id": owner_id}
    if before is not None:
        query["_id"] = {"$lt": before}
    return await Todo.find(query).sort(("_id", SortDirection.DESCENDING)).limit(limit).to_list()


@budgeted
async def get_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> Todo | None:
    """The owner's todo with this id; None for anyone else's."""
    return await Todo.find_one({"_id": todo_id, "owner_id": owner_id})


@budgeted
async def update_todo(
    *, owner_id: PydanticObjectId, todo_id: PydanticObjectId, changes: dict[str, Any]
) -> Todo | None:
    """Set `changes` on the owner's todo in one atomic update; None if there's no such todo."""
    updated = await Todo.find_one({"_id": todo_id, "owner_id": owner_id}).update(
        {"$set": {**changes, "updated_at": utc_now()}},
        response_type=UpdateResponse.NEW_DOCUMENT,
    )
    return updated if isinstance(updated, Todo) else None


@budgeted
async def delete_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> bool:
    """Delete the owner's todo; False if there was none."""
    result = await Todo.find_one({"_id": todo_id, "owner_id": owner_id}).delete()
    deleted = result is not None and result.deleted_count == 1
    if deleted:
        await _release_slot(owner_id)
    return deleted
