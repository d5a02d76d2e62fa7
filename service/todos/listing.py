"""Listing todos: filters, sort orders, keyset cursors and delta sync's watermark.

GET /api/todos hands `list_todos` its query and gets back a page: a `TodoPage` of the live
todos of the caller's lists (every list they can read, or the one `list_id` names), or with
`updated_since` a `TodoChanges` of what changed in them. Pages are keyset pages:
a cursor carries the sort key of the last item (see core/pagination.py), so todos created,
changed or deleted while a client pages never make an unchanged todo repeat or go missing.

Listings read raw documents (StoredTodo), not Todo documents: building a Todo per row cost
~30% more CPU per page (bench/REPORT.md).
"""

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from bson import ObjectId
from bson.errors import InvalidId

from service.config import Settings
from service.core.budget import budgeted
from service.core.clock import as_utc, utc_now
from service.core.pagination import (
    CursorMismatchError,
    InvalidCursorError,
    decode_cursor,
    encode_cursor,
    fingerprint,
)
from service.errors import BadRequest, Gone
from service.lists.access import READ, Caller
from service.lists.models import Role
from service.todos.dates import as_utc_instant, due_instant
from service.todos.models import StoredTodo, Todo
from service.todos.schemas import (
    SortOrder,
    TodoChanges,
    TodoPage,
    TodoPublic,
    TodoQuery,
    TodoSort,
    TodoTombstone,
)
from service.todos.store import LIVE, Lists, in_lists

ASCENDING, DESCENDING = SortDirection.ASCENDING, SortDirection.DESCENDING
SortKey = tuple[str, SortDirection]


@dataclass(frozen=True, kw_only=True)
class TodoFilters:
    """What GET /api/todos narrows a listing to; every filter given must match."""

    completed: bool | None = None
    tags: list[str] = field(default_factory=list)
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    priority: int | None = None


# Each listing order as index-friendly (field, direction) keys; `_id` last makes it total.
# Todos without a due have due_rank 1, so they come after the others in both directions.
# Each order has its index in models.py (todos_live_by_<sort>). Listings don't pass it as a
# `hint`: MongoDB's planner picks it by itself, and SecantusDB runs a hinted find ~60x slower
# than the plan it picks (an in-memory sort of the list's range either way). The explain test
# in tests/todos/test_listing.py checks each one; see docs/database.md.
def sort_keys(sort: TodoSort, order: SortOrder) -> list[SortKey]:
    """The (field, direction) pairs a listing is ordered by."""
    direction = ASCENDING if order is SortOrder.ASC else DESCENDING
    return {
        TodoSort.CREATED: [("_id", direction)],
        TodoSort.UPDATED: [("updated_at", direction), ("_id", direction)],
        TodoSort.DUE: [("due_rank", ASCENDING), ("due_at", direction), ("_id", direction)],
        TodoSort.PRIORITY: [("priority", direction), ("_id", direction)],
    }[sort]


# Delta sync is always in update order (index todos_sync).
CHANGES_KEYS: list[SortKey] = [("updated_at", ASCENDING), ("_id", ASCENDING)]


def _scope(caller: Caller, list_id: str | None) -> Lists:
    """The lists a listing covers: the one named (NotFound unless the caller can read it), or
    every list the caller can read."""
    if list_id is None:
        return caller.readable()
    named = PydanticObjectId(list_id)
    caller.require(named, READ)
    return [named]


def _scope_key(caller: Caller, list_id: str | None) -> dict[str, str | None]:
    """What a cursor's fingerprint holds of the scope: the user and the list asked for. Not
    the lists themselves: a list joined or left while paging changes what later pages hold
    (keyset paging takes that in its stride), not which query the cursor belongs to."""
    return {"user": str(caller.user_id), "list": list_id}


@budgeted
async def list_todos(
    *, caller: Caller, query: TodoQuery, settings: Settings
) -> TodoPage | TodoChanges:
    """A page of the todos of the caller's lists as `query` asks: a listing, or with
    `updated_since` the changes since then. NotFound for a `list_id` the caller can't read,
    BadRequest for an unusable cursor or query, Gone for an `updated_since` older than the
    tombstones kept."""
    if query.updated_since is not None or query.include_deleted:
        return await _list_changes(caller=caller, query=query, settings=settings)
    scope = _scope(caller, query.list_id)
    sort = query.sort or TodoSort.CREATED
    order = query.order or SortOrder.DESC
    filters = TodoFilters(
        completed=query.completed,
        tags=[t.lower() for t in query.tag or []],
        q=query.q,
        due_before=None if query.due_before is None else due_instant(query.due_before),
        due_after=None if query.due_after is None else due_instant(query.due_after),
        priority=query.priority,
    )
    query_fingerprint = fingerprint(
        {**_scope_key(caller, query.list_id), "sort": sort, "order": order, **asdict(filters)}
    )
    keys = sort_keys(sort, order)
    # An empty cursor is a bad cursor (400), not "no cursor".
    after = (
        None if query.cursor is None else _cursor_position(query.cursor, query_fingerprint, keys)
    )
    # One extra item tells whether there is a next page without a count query.
    todos = await _find(
        list_query(lists=scope, filters=filters, keys=keys, after=after), keys, query.limit + 1
    )
    page = todos[: query.limit]
    next_cursor = (
        encode_cursor(_cursor_key(page[-1], keys), query_fingerprint)
        if len(todos) > query.limit
        else None
    )
    return TodoPage(items=[TodoPublic.from_stored(t) for t in page], next_cursor=next_cursor)


@budgeted
async def newest_todos(*, caller: Caller, limit: int) -> list[TodoPublic]:
    """Up to `limit` live todos of every list the caller can read, newest first (no filters,
    no paging)."""
    todos = await _find(
        {"list_id": in_lists(caller.readable()), **LIVE},
        sort_keys(TodoSort.CREATED, SortOrder.DESC),
        limit,
    )
    return [TodoPublic.from_stored(t) for t in todos]


def _sync_scope(caller: Caller, list_id: str | None, include_deleted: bool) -> Lists:
    """The lists delta sync covers: those of a listing, and with tombstones but without
    `list_id` also the lists the caller owned that are deleted, whose todos' tombstones are
    owed to their owner (the other members learn of the deletion from lists sync and drop the
    todos themselves)."""
    scope = _scope(caller, list_id)
    if include_deleted and list_id is None:
        scope += [r.list_id for r in caller.removals.values() if r.role is Role.OWNER]
    return scope


async def _list_changes(*, caller: Caller, query: TodoQuery, settings: Settings) -> TodoChanges:
    since = query.updated_since
    if since is None:
        raise BadRequest("include_deleted needs updated_since")
    if query.sort not in {None, TodoSort.UPDATED} or query.order not in {None, SortOrder.ASC}:
        raise BadRequest("Delta sync (updated_since) is always in update order: sort=updated")
    filters = (
        query.completed,
        query.tag,
        query.q,
        query.due_before,
        query.due_after,
        query.priority,
    )
    if any(f is not None for f in filters):
        raise BadRequest("Delta sync (updated_since) takes no filters")
    now = utc_now()
    if since < now - timedelta(days=settings.tombstone_retention_days):
        raise Gone(
            f"updated_since is older than the {settings.tombstone_retention_days}-day tombstone "
            "retention: deletions may be missing, so do a full resync (list without it)"
        )
    scope = _sync_scope(caller, query.list_id, query.include_deleted)
    query_fingerprint = fingerprint(
        {
            **_scope_key(caller, query.list_id),
            "updated_since": as_utc(since).isoformat(),
            "include_deleted": query.include_deleted,
        }
    )
    # The watermark is fixed by the first page and carried by the cursor, so that the pages of
    # one answer cover one interval.
    watermark = max(now - timedelta(milliseconds=settings.sync_lag_ms), since)
    after = None
    if query.cursor is not None:
        after = _cursor_position(query.cursor, query_fingerprint, CHANGES_KEYS)
        watermark = _cursor_watermark(query.cursor, query_fingerprint)
    todos = await _find(
        changes_query(
            lists=scope,
            since=since,
            until=watermark,
            include_deleted=query.include_deleted,
            after=after,
        ),
        CHANGES_KEYS,
        query.limit + 1,
    )
    page = todos[: query.limit]
    next_cursor = (
        encode_cursor(
            _cursor_key(page[-1], CHANGES_KEYS), query_fingerprint, {"w": watermark.isoformat()}
        )
        if len(todos) > query.limit
        else None
    )
    # In view: a todo whose list is both in the scope and readable (a deleted list in the
    # scope isn't).
    in_view = set(scope) & set(caller.readable())
    return TodoChanges(
        items=[as_change(t, in_view=in_view, scope=scope) for t in page],
        next_cursor=next_cursor,
        watermark=watermark,
    )


def as_change(
    stored: StoredTodo, *, in_view: set[PydanticObjectId], scope: Lists
) -> TodoPublic | TodoTombstone:
    """How delta sync reports a todo that changed in, or left, the lists of `scope`: as it is
    if its list is in view; a tombstone once deleted; and as a tombstone too if it now is in
    a list out of view (moved to a list the caller can't read, or its list deleted), with the
    `list_id` of a list of the scope it left, never the one it is in now."""
    if stored["list_id"] in in_view:
        if stored.get("deleted_at") is None:
            return TodoPublic.from_stored(stored)
        return TodoTombstone.from_stored(stored)
    return TodoTombstone.of_departed(stored, _left(stored, scope))


def _left(stored: StoredTodo, scope: Lists) -> PydanticObjectId:
    """The list of `scope` a todo out of view is reported in: its own list if that is in the
    scope (a deleted list of the caller's), else the last of the scope's lists it was moved
    out of (sync_lists is in the order the todo joined them)."""
    if stored["list_id"] in scope:
        list_id: PydanticObjectId = stored["list_id"]
        return list_id
    # The query matched sync_lists on the scope: one of them is in it.
    wanted = set(scope)
    left: PydanticObjectId = next(e for e in reversed(stored["sync_lists"]) if e in wanted)
    return left


async def _find(query: dict[str, Any], keys: list[SortKey], limit: int) -> list[StoredTodo]:
    """Up to `limit` stored todos matching `query`, in the order `keys`, as raw documents."""
    sort = [(name, int(direction)) for name, direction in keys]
    cursor = Todo.get_pymongo_collection().find(query, sort=sort, limit=limit)
    documents: list[StoredTodo] = await cursor.to_list(limit)
    return documents


# ---- queries ----


def list_query(
    *,
    lists: Lists,
    filters: TodoFilters,
    keys: list[SortKey],
    after: list[Any] | None = None,
) -> dict[str, Any]:
    """The filter of one listing page of the todos of `lists` (exposed so tests can
    `explain` it)."""
    clauses: list[dict[str, Any]] = [{"list_id": in_lists(lists), **LIVE}]
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


def changes_query(
    *,
    lists: Lists,
    since: datetime,
    until: datetime,
    include_deleted: bool,
    after: list[Any] | None = None,
) -> dict[str, Any]:
    """The filter of one delta-sync page: changes in (since, until] of the todos of `lists`,
    after `after`. With tombstones, also those of the todos that left them (sync_lists, index
    todos_list_sync); without, the live todos in them (index todos_list_live_by_updated)."""
    changed = {"updated_at": {"$gt": since, "$lte": until}}
    clauses: list[dict[str, Any]] = [
        {"sync_lists": in_lists(lists), **changed}
        if include_deleted
        else {"list_id": in_lists(lists), **LIVE, **changed}
    ]
    if after is not None:
        clauses.append(_after(CHANGES_KEYS, after))
    return _all_of(clauses)


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


# ---- cursors ----


def _cursor_key(stored: StoredTodo, keys: list[SortKey]) -> list[Any]:
    """The JSON-ready sort key of a listed todo, for the cursor of the page after it."""
    return [_key_value_to_json(stored[name]) for name, _ in keys]


def _key_value_to_json(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="milliseconds")
    return value


def _cursor_position(cursor: str, query_fingerprint: str, keys: list[SortKey]) -> list[Any]:
    """The sort key a cursor made for this query carries, typed for a query; else BadRequest."""
    try:
        key, _ = decode_cursor(cursor, query_fingerprint)
        if len(key) != len(keys):
            raise InvalidCursorError("wrong key length")
        return [
            _key_value_from_json(name, value) for (name, _), value in zip(keys, key, strict=True)
        ]
    except CursorMismatchError as exc:
        raise BadRequest("This cursor belongs to a listing with other filters or sort") from exc
    except InvalidCursorError as exc:
        raise BadRequest("Invalid cursor") from exc


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


def _cursor_watermark(cursor: str, query_fingerprint: str) -> datetime:
    """The watermark a delta-sync cursor carries (fixed by its first page); else BadRequest."""
    _, extra = decode_cursor(cursor, query_fingerprint)
    try:
        # Naive or out-of-range instants are ValueErrors: never reach the database.
        return as_utc_instant(datetime.fromisoformat(extra["w"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest("Invalid cursor") from exc
