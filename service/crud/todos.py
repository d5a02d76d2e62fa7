"""Queries on todos. Every one filters on owner_id: nobody reaches another user's todos."""

from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from pymongo import ReturnDocument

from service.models import Todo, due_instant, utc_now


def _derived_due(due: str | None) -> dict[str, Any]:
    """The stored fields that follow from `due`: its instant, and its rank for sorting."""
    if due is None:
        return {"due": None, "due_at": None, "due_rank": 1}
    return {"due": due, "due_at": due_instant(due), "due_rank": 0}


async def create_todo(
    *, owner_id: PydanticObjectId, fields: dict[str, Any], todo_id: PydanticObjectId | None = None
) -> Todo:
    """Insert a todo owned by owner_id with the writable `fields` (a validated TodoCreate)."""
    now = utc_now()
    values = {**fields, **_derived_due(fields.get("due"))}
    todo = Todo(
        id=todo_id,
        owner_id=owner_id,
        completed_at=now if values.get("completed") else None,
        created_at=now,
        updated_at=now,
        **values,
    )
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


async def update_todo(
    *,
    owner_id: PydanticObjectId,
    todo_id: PydanticObjectId,
    changes: dict[str, Any],
    version: int | None = None,
) -> Todo | None:
    """Apply `changes` to the owner's todo in one atomic update and bump its version.

    With `version`, only if the stored version is that one. None if nothing matched.
    """
    query: dict[str, Any] = {"_id": todo_id, "owner_id": owner_id}
    if version is not None:
        query["version"] = version
    raw = await Todo.get_pymongo_collection().find_one_and_update(
        query, _update_pipeline(changes, utc_now()), return_document=ReturnDocument.AFTER
    )
    return None if raw is None else Todo.model_validate(raw)


async def delete_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> bool:
    """Delete the owner's todo; False if there was none."""
    result = await Todo.find_one({"_id": todo_id, "owner_id": owner_id}).delete()
    return result is not None and result.deleted_count == 1
