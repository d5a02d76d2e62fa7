"""Queries on single todos. Every one that reads or changes a todo for a caller filters on
the lists the caller may read (or change): nobody reaches the todos of a list they aren't a
member of.

Listings (many todos, filtered and paged) are in listing.py. A todo is read and returned as
its raw document (StoredTodo); TodoPublic.from_stored is its one conversion to the API shape.
The todo limit (MAX_TODOS_PER_LIST) is a slot on the list document, taken and given back by
service.py through lists.service: this module only touches todos.
"""

import asyncio
from datetime import datetime
from typing import Any

import anyio
import pymongo
from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import CursorNotFound

from service.core.budget import budgeted
from service.core.clock import utc_now
from service.core.store import StoredDocument, update_then_read
from service.todos.dates import due_instant
from service.todos.models import IdempotencyKey, StoredTodo, Todo

# Normal reads never see tombstones (deleted todos kept for delta sync).
LIVE: dict[str, Any] = {"deleted_at": None}

Lists = list[PydanticObjectId]
# How long closing a cursor may hold up the end of a response (see _closed).
CURSOR_CLOSE_SECONDS = 2.0


def _todos() -> AsyncCollection[StoredDocument]:
    return Todo.get_pymongo_collection()


def in_lists(lists: Lists) -> PydanticObjectId | dict[str, Lists]:
    """A filter value matching any of `lists`: one list as itself (an equality is what an
    index serves best), several as `$in`."""
    return lists[0] if len(lists) == 1 else {"$in": lists}


def _derived_due(due: str | None) -> dict[str, Any]:
    """The stored fields that follow from `due`: its instant, and its rank for sorting."""
    if due is None:
        return {"due": None, "due_at": None, "due_rank": 1}
    return {"due": due, "due_at": due_instant(due), "due_rank": 0}


@budgeted
async def insert_todo(
    *,
    list_id: PydanticObjectId,
    created_by: PydanticObjectId,
    fields: dict[str, Any],
    todo_id: PydanticObjectId | None = None,
) -> StoredTodo:
    """Insert a todo into the list with the writable `fields` (a validated TodoCreate); the
    caller has taken the list's todo slot (service.create_todo)."""
    stored = _new_todo(list_id, created_by, fields, todo_id, utc_now())
    await _todos().insert_one(stored)
    return stored


def _new_todo(
    list_id: PydanticObjectId,
    created_by: PydanticObjectId,
    fields: dict[str, Any],
    todo_id: PydanticObjectId | None,
    now: datetime,
) -> dict[str, Any]:
    """The document of a new todo with the writable `fields`."""
    values = {**fields, **_derived_due(fields.get("due"))}
    # Built as a Todo for its defaults and checks, inserted as the document it dumps to.
    stored: dict[str, Any] = Todo(
        id=todo_id or PydanticObjectId(),
        list_id=list_id,
        created_by=created_by,
        sync_lists=[list_id],
        completed_at=now if values.get("completed") else None,
        created_at=now,
        updated_at=now,
        **values,
    ).model_dump(by_alias=True)
    return stored


@budgeted
async def get_todo(*, todo_id: PydanticObjectId, lists: Lists) -> StoredTodo | None:
    """The live todo with this id if it is in one of `lists`; None otherwise (another list's,
    a tombstone, no such id)."""
    stored: StoredTodo | None = await _todos().find_one(_one_todo(todo_id, lists, None))
    return stored


def _one_todo(
    todo_id: PydanticObjectId, lists: Lists, versions: list[int] | None
) -> dict[str, Any]:
    query: dict[str, Any] = {"_id": todo_id, "list_id": in_lists(lists), **LIVE}
    if versions is not None:
        query["version"] = {"$in": versions}
    return query


def _update_stage(changes: dict[str, Any], now: datetime) -> dict[str, Any]:
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
    return stage


@budgeted
async def update_todo(
    *,
    todo_id: PydanticObjectId,
    lists: Lists,
    readable: Lists,
    changes: dict[str, Any],
    versions: list[int] | None = None,
) -> StoredTodo | None:
    """Apply `changes` to the live todo if it is in one of `lists`, in one atomic update, and
    bump its version; the todo as it is now, if it is still in one of `readable`.

    With `versions`, only if the stored version is one of them: the check is part of the
    update's filter, so of two writers holding the same version exactly one wins.
    None if nothing matched.
    """
    matched, stored = await update_then_read(
        _todos(),
        _one_todo(todo_id, lists, versions),
        [{"$set": _update_stage(changes, utc_now())}],
        read=_one_todo(todo_id, readable, None),
    )
    return stored if matched else None


@budgeted
async def move_todo(
    *,
    todo_id: PydanticObjectId,
    source: PydanticObjectId,
    target: PydanticObjectId,
    readable: Lists,
    changes: dict[str, Any],
    versions: list[int] | None = None,
) -> tuple[bool, StoredTodo | None]:
    """Move the live todo from `source` to `target` with `changes`, in one atomic update (only
    if it is still in `source`, and at one of `versions` when given): whether it moved, and
    the todo as it is now if it is in one of `readable`.

    `moved_from` records the list it left (for the change feed), and `sync_lists` gains the
    target, so that delta sync reports the todo to the members of every list it was in.
    """
    stage = _update_stage(changes, utc_now())
    stage["list_id"] = {"$literal": target}
    stage["moved_from"] = "$list_id"  # the stored value: expressions read the todo before
    # Todos written before sync_lists existed count as having been in their list only.
    before = {"$ifNull": ["$sync_lists", ["$list_id"]]}
    # An ObjectId can't be read as a field path or an operator: it needs no $literal.
    stage["sync_lists"] = {
        "$cond": [{"$in": [target, before]}, before, {"$concatArrays": [before, [target]]}]
    }
    return await update_then_read(
        _todos(),
        _one_todo(todo_id, [source], versions),
        [{"$set": stage}],
        read=_one_todo(todo_id, readable, None),
    )


# What a tombstone keeps: its id, its lists (list_id, sync_lists, moved_from), created_by,
# version and timestamps (created_at, updated_at, deleted_at), all that delta sync and the
# feed's `deleted` event need. Everything the user
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
    *, todo_id: PydanticObjectId, lists: Lists, versions: list[int] | None = None
) -> PydanticObjectId | None:
    """Delete the live todo if it is in one of `lists` (and at one of `versions`, when given):
    the list it was deleted from, or None if nothing matched.

    The todo stays as a tombstone (deleted_at set, version bumped, its content removed) so that
    delta sync and the change feed see the deletion; a TTL index removes it after the
    retention period.
    """
    result = await _todos().update_one(
        _one_todo(todo_id, lists, versions), _tombstone_update(utc_now())
    )
    if result.modified_count != 1:
        return None
    if len(lists) == 1:
        return lists[0]  # the filter named the list: no need to read it back
    # A tombstone is never moved: its list_id is the list it was deleted from.
    stored = await _todos().find_one({"_id": todo_id}, projection={"list_id": 1})
    return None if stored is None else PydanticObjectId(stored["list_id"])


@budgeted
async def lists_with_completed(*, lists: Lists) -> Lists:
    """Those of `lists` that hold a completed live todo."""
    found = await _todos().distinct(
        "list_id", {"list_id": in_lists(lists), "completed": True, **LIVE}
    )
    return [PydanticObjectId(list_id) for list_id in found]


@budgeted
async def clear_completed(*, list_id: PydanticObjectId) -> int:
    """Delete (as tombstones) every completed todo of the list; how many there were."""
    result = await _todos().update_many(
        {"list_id": list_id, "completed": True, **LIVE}, _tombstone_update(utc_now())
    )
    return result.modified_count


@budgeted
async def delete_todos_in_list(
    *, list_id: PydanticObjectId, session: AsyncClientSession | None = None
) -> int:
    """Delete (as tombstones) every live todo of the list; how many there were. In
    `session`'s transaction if given.

    For a list being deleted: its todo slots are not given back (the list goes with them).
    """
    result = await _todos().update_many(
        {"list_id": list_id, **LIVE}, _tombstone_update(utc_now()), session=session
    )
    return result.modified_count


@budgeted
async def delete_idempotency_keys_of(
    *, user_id: PydanticObjectId, session: AsyncClientSession | None = None
) -> None:
    """Delete the user's idempotency records (each holds a copy of the todo it created). In
    `session`'s transaction if given."""
    await IdempotencyKey.get_pymongo_collection().delete_many(
        {"owner_id": user_id}, session=session
    )


# ---- For export and import (issue 14, transfer feature) ----


@budgeted
async def insert_todos(
    *,
    list_id: PydanticObjectId,
    created_by: PydanticObjectId,
    todos: list[tuple[PydanticObjectId, dict[str, Any]]],
    session: AsyncClientSession | None = None,
) -> None:
    """Insert many todos (each its id, chosen by the caller so that it can withdraw them even
    after a failed insert, and validated TodoCreate fields) into the list in one round trip.
    The caller has taken the list's slots for them (an import). In `session`'s transaction if
    given."""
    now = utc_now()
    documents = [_new_todo(list_id, created_by, fields, todo_id, now) for todo_id, fields in todos]
    if documents:
        await _todos().insert_many(documents, session=session)


@budgeted
async def delete_todos(*, list_id: PydanticObjectId, todo_ids: list[PydanticObjectId]) -> int:
    """Delete (as tombstones) these live todos of the list; how many there were (an import
    undone: they were live a moment, so readers learn of their deletion as of any other)."""
    result = await _todos().update_many(
        {"_id": {"$in": todo_ids}, "list_id": list_id, **LIVE}, _tombstone_update(utc_now())
    )
    return result.modified_count


class LiveTodos:
    """A list's live todos in creation order (by _id), read `batch_size` at a time from one
    cursor: an export holds one batch in memory, never the whole list.

    One cursor, not a query per batch: SecantusDB fetches every document of a find's index
    range before it sorts and applies the limit, so a page after `_id > last` read the rest of
    the list again on every page (10 000 todos in pages of 500: 12.7 s; one cursor: 1.6 s,
    bench/export_queries.py). SecantusDB runs the find whole, keeps its result on its side and
    hands it out a batch per getMore (so the first batch costs the list); MongoDB streams it.

    Each `next_batch` is one database call (budgeted: the caller gives each its own budget).
    A cursor the server dropped while the reader waited (its idle timeout, 10 minutes on both
    servers: a client reading the export slowly) is reopened after the last todo read, so a
    slow reader costs the server a cursor for at most that long and still gets every todo.
    `close` kills the cursor; the reader must be closed (an export cut short by its client
    closes it, see transfer/exports.py).
    """

    def __init__(self, *, list_id: PydanticObjectId, batch_size: int) -> None:
        self._query: dict[str, Any] = {"list_id": list_id, **LIVE}
        self._batch_size = batch_size
        self._cursor: AsyncCursor[StoredDocument] | None = None
        self._after: PydanticObjectId | None = None
        self._done = False

    def _open(self) -> AsyncCursor[StoredDocument]:
        query = self._query
        if self._after is not None:
            query = {**query, "_id": {"$gt": self._after}}
        # No I/O yet: the find is sent by the first to_list.
        return _todos().find(query, sort=[("_id", pymongo.ASCENDING)], batch_size=self._batch_size)

    @budgeted
    async def next_batch(self) -> list[StoredDocument]:
        """The next (up to) `batch_size` todos; an empty list once they are all read."""
        if self._done:
            return []
        if self._cursor is None:
            self._cursor = self._open()
        try:
            batch: list[StoredDocument] = await self._cursor.to_list(self._batch_size)
        except CursorNotFound:
            if self._after is None:
                raise  # not a getMore: nothing to resume from
            await _closed(self._cursor)
            self._cursor = self._open()
            batch = await self._cursor.to_list(self._batch_size)
        if batch:
            self._after = batch[-1]["_id"]
        if len(batch) < self._batch_size:
            # to_list stops short only at the cursor's end: spare the caller an empty read.
            self._done = True
            await self.close()
        return batch

    async def close(self) -> None:
        """Kill the cursor (if still open); reading after this reopens it."""
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            await _closed(cursor)


async def _closed(cursor: AsyncCursor[StoredDocument]) -> None:
    """Close a cursor, also from a task being cancelled: a client gone mid-export has the
    response's task cancelled by starlette's cancel scope, which would cancel the killCursors
    too. Shielded from that scope (and, should the task itself be cancelled, still sent from a
    task of its own), for at most CURSOR_CLOSE_SECONDS: past that the server drops the cursor
    at its idle timeout anyway."""
    with anyio.move_on_after(CURSOR_CLOSE_SECONDS, shield=True):
        await asyncio.shield(cursor.close())
