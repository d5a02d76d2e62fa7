"""Queries on todos. Every one filters on owner_id: nobody reaches another user's todos."""

from typing import Any

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from beanie.odm.queries.update import UpdateResponse

from service.models import Todo, utc_now


async def create_todo(*, owner_id: PydanticObjectId, text: str, completed: bool) -> Todo:
    """Insert a todo owned by owner_id."""
    todo = Todo(owner_id=owner_id, text=text, completed=completed)
    await todo.insert()
    return todo


async def list_todos(
    *, owner_id: PydanticObjectId, limit: int, before: PydanticObjectId | None = None
) -> list[Todo]:
    """Up to `limit` of the owner's todos, newest first, older than `before` if given."""
    query: dict[str, Any] = {"owner_id": owner_id}
    if before is not None:
        query["_id"] = {"$lt": before}
    return await Todo.find(query).sort(("_id", SortDirection.DESCENDING)).limit(limit).to_list()


async def get_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> Todo | None:
    """The owner's todo with this id; None for anyone else's."""
    return await Todo.find_one({"_id": todo_id, "owner_id": owner_id})


async def update_todo(
    *, owner_id: PydanticObjectId, todo_id: PydanticObjectId, changes: dict[str, Any]
) -> Todo | None:
    """Set `changes` on the owner's todo in one atomic update; None if there's no such todo."""
    updated = await Todo.find_one({"_id": todo_id, "owner_id": owner_id}).update(
        {"$set": {**changes, "updated_at": utc_now()}},
        response_type=UpdateResponse.NEW_DOCUMENT,
    )
    return updated if isinstance(updated, Todo) else None


async def delete_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> bool:
    """Delete the owner's todo; False if there was none."""
    result = await Todo.find_one({"_id": todo_id, "owner_id": owner_id}).delete()
    return result is not None and result.deleted_count == 1
