"""Queries on todos. Every one filters on owner_id: nobody reaches another user's todos."""

import contextlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import OperationFailure, PyMongoError

from service.accounts.models import User
from service.core.budget import budgeted
from service.core.clock import utc_now
from service.core.pagination import InvalidCursorError
from service.errors import Conflict
from service.todos.dates import as_utc_instant, due_instant
from service.todos.models import StoredTodo, Todo

# Normal reads never see tombstones (deleted todos kept for delta sync).
LIVE: dict[str, Any] = {"deleted_at": None}


class TodoSort(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DUE = "due"
    PRIORITY = "priority"


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True, kw_only=True)
class TodoFilters:
    """What GET /api/todos narrows a listing to; every filter given must match."""

    completed: bool | None = None
    tags: list[str] = field(default_factory=list)
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    priority: int | None = None


ASCENDING, DESCENDING = SortDirection.ASCENDING, SortDirection.DESCENDING
SortKey = tuple[str, SortDirection]


# Each listing order as index-friendly (field, direction) keys; `_id` last makes it total.
# Todos without a due have due_rank 1, so they come after the others in both directions.
def sort_keys(sort: TodoSort, order: SortOrder) -> list[SortKey]:
    """The (field, direction) pairs a listing is ordered by."""
    direction = ASCENDING if order is SortOrder.ASC else DESCENDING
    return {
        TodoSort.CREATED: [("_id", direction)],
        TodoSort.UPDATED: [("updated_at", direction), ("_id", direction)],
        TodoSort.DUE: [("due_rank", ASCENDING), ("due_at", direction), ("_id", direction)],
        TodoSort.PRIORITY: [("priority", direction), ("_id", direction)],
    }[sort]


# The index that serves each sort. Listings don't pass it as a `hint`: MongoDB's planner picks
# it by itself, and SecantusDB runs a hinted find ~60x slower than the plan it picks (an
# in-memory sort of the owner's range either way). The explain test checks each one. See README.
SORT_INDEXES = {
    TodoSort.CREATED: "todos_live_by_created",
    TodoSort.UPDATED: "todos_live_by_updated",
    TodoSort.DUE: "todos_live_by_due",
    TodoSort.PRIORITY: "todos_live_by_priority",
}


def _key_value_to_json(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat(timespec="milliseconds")
    return value


# The integers a sort key can hold: due_rank is 0 or 1, and anything BSON can't store (a
# cursor carrying 10**30) must never reach a query. Instants are checked by as_utc_instant.
_BSON_INT64 = range(-(2**63), 2**63)
_KEY_INT_RANGES = {"due_rank": range(2), "priority": _BSON_INT64}


def _key_value_from_json(name: str, value: Any) -> Any:
    """A sort key value back from a cursor; InvalidCursorError if it has the wrong type or
    lies outside the values a stored todo can have."""
    try:
        if name == "_id" and isinstance(value, str):
            return PydanticObjectId(value)
        if name in {"updated_at", "due_at"} and isinstance(value, str):
            return as_utc_instant(datetime.fromisoformat(value))
        if name == "due_at" and value is None:
            return None
        if name in _KEY_INT_RANGES and type(value) is int and value in _KEY_INT_RANGES[name]:
            return value
    except (InvalidId, ValueError) as exc:
        raise InvalidCursorError(name) from exc
    raise InvalidCursorError(name)


def cursor_key(stored: StoredTodo, keys: list[SortKey]) -> list[Any]:
    """The JSON-ready sort key of a listed todo, for the cursor of the page after it."""
    return [_key_value_to_json(stored[name]) for name, _ in keys]


async def _find(query: dict[str, Any], keys: list[SortKey], limit: int) -> list[StoredTodo]:
    """Up to `limit` stored todos matching `query`, in the order `keys`, as raw documents."""
    sort = [(name, int(direction)) for name, direction in keys]
    cursor = Todo.get_pymongo_collection().find(query, sort=sort, limit=limit)
    documents: list[StoredTodo] = await cursor.to_list(limit)
    return documents


def parse_cursor_key(raw: list[Any], keys: list[SortKey]) -> list[Any]:
    """The sort key a cursor carries, typed for a query; InvalidCursorError if it doesn't fit."""
    if len(raw) != len(keys):
        raise InvalidCursorError("wrong key length")
    return [_key_value_from_json(name, value) for (name, _), value in zip(keys, raw, strict=True)]


def _after(keys: list[SortKey], last: list[Any]) -> dict[str, Any]:
    """Everything strictly after the item with sort key `last`, in the order `keys`."""
    branches: list[dict[str, Any]] = []
    for i, (name, direction) in enumerate(keys):
        if last[i] is None:
            # Nulls only share a group with nulls (due_rank): nothing sorts beyond them there.
            continue
        branch: dict[str, Any] = {keys[j][0]: last[j] for j in range(i)}
        branch[name] = {"$gt" if direction == ASCENDING else "$lt": last[i]}
        branches.append(branch)
    if not branches:
        return {"_id": {"$exists": False}}
    return branches[0] if len(branches) == 1 else {"$or": branches}


def _all_of(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """One filter matching every clause: their fields side by side where they don't clash, the
    rest under `$and`. SecantusDB only uses an index for a filter without top-level operators."""
    flat: dict[str, Any] = {}
    clashing: list[dict[str, Any]] = []
    for clause in clauses:
        if flat.keys() & clause.keys():
            clashing.append(clause)
        else:
            flat.update(clause)
    return {**flat, "$and": clashing} if clashing else flat


def list_query(
    *,
    owner_id: PydanticObjectId,
    filters: TodoFilters,
    keys: list[SortKey],
    after: list[Any] | None = None,
) -> dict[str, Any]:
    """The filter of one listing page (exposed so tests can `explain` it)."""
    clauses: list[dict[str, Any]] = [{"owner_id": owner_id, **LIVE}]
    if filters.completed is not None:
        clauses.append({"completed": filters.completed})
    if filters.tags:
        clauses.append({"tags": {"$all": filters.tags}})
    if filters.priority is not None:
        clauses.append({"priority": filters.priority})
    due: dict[str, Any] = {}
    if filters.due_before is not None:
        due["$lt"] = filters.due_before
    if filters.due_after is not None:
        due["$gte"] = filters.due_after
    if due:
        clauses.append({"due_at": due})
    if filters.q:
        # Taken literally and case-insensitively: no $text index on SecantusDB.
        pattern = {"$regex": re.escape(filters.q), "$options": "i"}
        clauses.append({"$or": [{"text": pattern}, {"notes": pattern}]})
    if after is not None:
        clauses.append(_after(keys, after))
    return _all_of(clauses)


@budgeted
async def find_todos(
    *,
    owner_id: PydanticObjectId,
    filters: TodoFilters,
    sort: TodoSort,
    order: SortOrder,
    limit: int,
    after: list[Any] | None = None,
) -> list[StoredTodo]:
    """Up to `limit` of the owner's live todos matching `filters`, in the given order,
    after the sort key `after` (from a cursor) if given."""
    keys = sort_keys(sort, order)
    query = list_query(owner_id=owner_id, filters=filters, keys=keys, after=after)
    return await _find(query, keys, limit)


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
) -> Todo:
    """Insert a todo owned by owner_id with the writable `fields` (a validated TodoCreate);
    Conflict if the owner already has `max_todos` live todos."""
    # The owner's todo_count is the limit's source of truth: a conditional $inc reserves a
    # slot atomically (count-then-insert would let parallel creates all pass the check).
    # `$not: {$gte}` also matches users stored before todo_count existed.
    reserved = await User.get_pymongo_collection().update_one(
        {"_id": owner_id, "todo_count": {"$not": {"$gte": max_todos}}},
        {"$inc": {"todo_count": 1}},
    )
    if reserved.modified_count != 1:
        raise Conflict(f"Todo limit reached: at most {max_todos} todos; delete some first.")
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
    try:
        await todo.insert()
    except Exception:
        # Best effort: if the database is gone this fails too, and the count stays one high
        # (the limit gets stricter by one, never looser).
        with contextlib.suppress(PyMongoError):
            await _release_slots(owner_id, 1)
        raise
    return todo


async def _release_slots(owner_id: PydanticObjectId, count: int) -> None:
    """Give back `count` of the owner's todo slots (after deletes, or a failed insert)."""
    await User.get_pymongo_collection().update_one(
        {"_id": owner_id, "todo_count": {"$gte": count}}, {"$inc": {"todo_count": -count}}
    )


@budgeted
async def list_todos(
    *, owner_id: PydanticObjectId, limit: int, before: PydanticObjectId | None = None
) -> list[StoredTodo]:
    """Up to `limit` of the owner's todos, newest first, older than `before` if given."""
    query: dict[str, Any] = {"owner_id": owner_id, **LIVE}
    if before is not None:
        query["_id"] = {"$lt": before}
    return await _find(query, sort_keys(TodoSort.CREATED, SortOrder.DESC), limit)


@budgeted
async def get_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> Todo | None:
    """The owner's live todo with this id; None for anyone else's (or a tombstone)."""
    return await Todo.find_one({"_id": todo_id, "owner_id": owner_id, **LIVE})


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
) -> Todo | None:
    """Apply `changes` to the owner's live todo in one atomic update and bump its version.

    With `versions`, only if the stored version is one of them: the check is part of the
    update's filter, so of two writers holding the same version exactly one wins.
    None if nothing matched.
    """
    # update_one and a read by _id, not find_one_and_update: SecantusDB's findAndModify scans
    # the whole collection (~250 ms at 20k todos; this takes ~3 ms). The check and the write
    # stay one atomic update; the read after it can only see this write or a newer one.
    updated = await Todo.get_pymongo_collection().update_one(
        _one_todo(owner_id, todo_id, versions), _update_pipeline(changes, utc_now())
    )
    if updated.matched_count != 1:
        return None
    return await Todo.find_one({"_id": todo_id, "owner_id": owner_id, **LIVE})


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
    await _release_slots(owner_id, 1)
    return True


@budgeted
async def clear_completed(*, owner_id: PydanticObjectId) -> int:
    """Delete (as tombstones) every completed todo of the owner; how many there were."""
    result = await Todo.get_pymongo_collection().update_many(
        {"owner_id": owner_id, "completed": True, **LIVE}, _tombstone_update(utc_now())
    )
    if result.modified_count:
        await _release_slots(owner_id, result.modified_count)
    return result.modified_count


TOMBSTONE_TTL_INDEX = "todos_tombstone_ttl"


@budgeted
async def ensure_tombstone_ttl(*, retention: timedelta) -> None:
    """Create (or retune) the TTL index that removes tombstones after `retention`."""
    seconds = int(retention.total_seconds())
    collection = Todo.get_pymongo_collection()
    try:
        await collection.create_index(
            [("deleted_at", ASCENDING)], name=TOMBSTONE_TTL_INDEX, expireAfterSeconds=seconds
        )
    except OperationFailure as exc:
        if exc.code not in {85, 86}:  # IndexOptionsConflict, IndexKeySpecsConflict
            raise
        await collection.database.command(
            "collMod",
            collection.name,
            index={"name": TOMBSTONE_TTL_INDEX, "expireAfterSeconds": seconds},
        )


CHANGES_KEYS: list[SortKey] = [("updated_at", ASCENDING), ("_id", ASCENDING)]


def changes_query(
    *,
    owner_id: PydanticObjectId,
    since: datetime,
    until: datetime,
    include_deleted: bool,
    after: list[Any] | None = None,
) -> dict[str, Any]:
    """The filter of one delta-sync page: changes in (since, until], after `after`."""
    clauses: list[dict[str, Any]] = [
        {"owner_id": owner_id, "updated_at": {"$gt": since, "$lte": until}}
    ]
    if not include_deleted:
        clauses.append(LIVE)
    if after is not None:
        clauses.append(_after(CHANGES_KEYS, after))
    return _all_of(clauses)


@budgeted
async def find_changes(
    *,
    owner_id: PydanticObjectId,
    since: datetime,
    until: datetime,
    include_deleted: bool,
    limit: int,
    after: list[Any] | None = None,
) -> list[StoredTodo]:
    """The owner's todos (and tombstones if asked) changed in (since, until], in update order."""
    query = changes_query(
        owner_id=owner_id, since=since, until=until, include_deleted=include_deleted, after=after
    )
    return await _find(query, CHANGES_KEYS, limit)
