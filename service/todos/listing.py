"""Listing todos: filters, sort orders, keyset cursors and delta sync's watermark.

GET /api/todos hands `list_todos` its query and gets back a page: a `TodoPage` of the live
todos of the caller's lists (every list they can read, or the one `list_id` names), or with
`updated_since` a `TodoChanges` of what changed in them. Pages are keyset pages:
a cursor carries the sort key of the last item (see core/pagination.py), so todos created,
changed or deleted while a client pages never make an unchanged todo repeat or go missing.

Listings read raw documents (StoredTodo), not Todo documents: building a Todo per row cost
~30% more CPU per page (bench/REPORT.md).
"""

import asyncio
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
    PRIORITY_MAX,
    SortOrder,
    TodoChanges,
    TodoPage,
    TodoPublic,
    TodoQuery,
    TodoSort,
    TodoTombstone,
)
from service.todos.store import LIVE, Lists

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
    after, skip = (
        (None, 0) if query.cursor is None else _cursor_start(query.cursor, query_fingerprint, keys)
    )
    # One extra item tells whether there is a next page without a count query.
    todos = await _page(
        [_ListingScope(list_id, filters) for list_id in scope], keys, after, skip, query.limit + 1
    )
    page = todos[: query.limit]
    next_cursor = (
        encode_cursor(
            _cursor_key(page[-1], keys), query_fingerprint, _next_start(page[-1], todos[-1], keys)
        )
        if len(todos) > query.limit
        else None
    )
    return TodoPage(items=[TodoPublic.from_stored(t) for t in page], next_cursor=next_cursor)


@budgeted
async def newest_todos(*, caller: Caller, limit: int) -> list[TodoPublic]:
    """Up to `limit` live todos of every list the caller can read, newest first (no filters,
    no paging)."""
    todos = await _page(
        [_ListingScope(list_id, TodoFilters()) for list_id in caller.readable()],
        sort_keys(TodoSort.CREATED, SortOrder.DESC),
        None,
        0,
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
    after, skip = None, 0
    if query.cursor is not None:
        after, skip = _cursor_start(query.cursor, query_fingerprint, CHANGES_KEYS)
        watermark = _cursor_watermark(query.cursor, query_fingerprint)
    todos = await _page(
        [
            _ChangesScope(list_id, since, watermark, query.include_deleted)
            for list_id in dict.fromkeys(scope)
        ],
        CHANGES_KEYS,
        after,
        skip,
        query.limit + 1,
    )
    page = todos[: query.limit]
    next_cursor = (
        encode_cursor(
            _cursor_key(page[-1], CHANGES_KEYS),
            query_fingerprint,
            {"w": watermark.isoformat(), **_next_start(page[-1], todos[-1], CHANGES_KEYS)},
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


# ---- windows ----
#
# Why pages are read in windows: SecantusDB (the embedded default) answers a find from an index
# only when its filter is flat, equality fields that lead an index and at most one range on the
# index's next field, and even then it fetches every document of that range before it sorts
# and applies the limit. A page of the newest 20 of a list of 20 000 todos fetched all 20 000
# (554 ms); with `_id` bounded to a window of ~100 it took 4.7 ms. MongoDB stops at the limit
# either way. So the keys after a page's start are split into segments that are each one such
# range (`_segments`: equality on the leading sort keys, a range on the next; a sort key with
# few values, priority or due_rank, is walked value by value), and each segment is read in
# windows of its range key (`_walk`): the first one day wide at the cursor (or the start of the
# range; a segment after another starts as wide as that one ended), each next one 4 to 16
# times wider (by the density seen so far), until the page is full or a window passes the hint
# of where the range ends (the list's creation, or now; a due may lie a year beyond either),
# after which the window is open to the range's end: a todo beyond the hints is still found,
# only later. Todos sharing an instant (a tie) are read at once. Filters no index serves go to
# a second `$match` stage, so the first stays index-shaped; several lists are read list by
# list, concurrently (an `$in` would fetch each list whole), and merged. Round trips, worst
# case (filters matching nothing, data in none of the windows): every window that isn't the
# last of its segment is at least 4 times wider than the one before, so a list takes at most
# segments + ceil(log4(span / 1 day)) reads: 1 + 7 for `created` on a list made 10 years ago,
# 2 + 7 for `updated` and sync, 3 + 8 for `due`, 5 + 7 for `priority`; one for a list younger
# than a day. A page whose next item was known spares the next page the empty reads of ties
# (_next_start).
_FIRST_WINDOW = timedelta(days=1)
_MIN_GROWTH, _MAX_GROWTH = 4, 16
# Due instants, unlike creation and update times, may lie before the list or after now.
_DUE_MARGIN = timedelta(days=366)
# How far past the density seen a window reaches, so that it fills the page more often.
_OVERSHOOT = 1.5

Range = list[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class _Segment:
    """One index range of a walk: `equal` fixes the leading sort keys, `field` runs (from
    after `after`, or its start). `depth` is how many leading keys it holds equal to the
    cursor's: a page whose next item differed in fewer skips it (see _next_start)."""

    depth: int
    equal: dict[str, Any]
    field: str
    ascending: bool
    after: Any = None
    # Todos sharing an instant (a tie) are few: read at once rather than in windows of `_id`.
    whole: bool = False


@dataclass(frozen=True, slots=True)
class _ListingScope:
    """The live todos of one list that a listing's filters match."""

    list_id: PydanticObjectId
    filters: TodoFilters

    def base(self, keys: list[SortKey]) -> dict[str, Any]:
        base: dict[str, Any] = {"list_id": self.list_id, **LIVE}
        if self.filters.priority is not None and keys[0][0] == "_id":
            # The priority index serves (priority, _id) as well as the created index _id.
            base["priority"] = self.filters.priority
        return base

    def choices(
        self, name: str, equal: dict[str, Any], direction: SortDirection
    ) -> list[Any] | None:
        """The values a sort key is walked through one by one; None for a range."""
        if name == "priority":
            if self.filters.priority is not None:
                return [self.filters.priority]
            values = list(range(PRIORITY_MAX + 1))
            return values if direction == ASCENDING else values[::-1]
        if name == "due_rank":
            # Todos without a due never match a due filter.
            return [0] if self._due_range() else [0, 1]
        if name == "due_at" and equal.get("due_rank") == 1:
            return [None]
        return None

    def bounds(self, name: str) -> Range:
        return self._due_range() if name == "due_at" else []

    def _due_range(self) -> Range:
        due: Range = []
        if self.filters.due_after is not None:
            due.append(("$gte", self.filters.due_after))
        if self.filters.due_before is not None:
            due.append(("$lt", self.filters.due_before))
        return due

    def residual(self, keys: list[SortKey]) -> dict[str, Any]:
        """The filters the segments' index ranges don't apply."""
        filters, names = self.filters, {name for name, _ in keys}
        residual: dict[str, Any] = {}
        if filters.completed is not None:
            residual["completed"] = filters.completed
        if filters.tags:
            residual["tags"] = {"$all": filters.tags}
        if filters.priority is not None and "priority" not in names and keys[0][0] != "_id":
            residual["priority"] = filters.priority
        if "due_at" not in names and (due := self._due_range()):
            residual["due_at"] = dict(due)
        if filters.q:
            # Taken literally and case-insensitively: no $text index on SecantusDB.
            pattern = {"$regex": re.escape(filters.q), "$options": "i"}
            residual["$or"] = [{"text": pattern}, {"notes": pattern}]
        return residual


@dataclass(frozen=True, slots=True)
class _ChangesScope:
    """What delta sync reports of one list: changes in (since, until], with tombstones those
    of the todos that left it too (sync_lists, index todos_list_sync), without only its live
    todos (index todos_list_live_by_updated)."""

    list_id: PydanticObjectId
    since: datetime
    until: datetime
    include_deleted: bool

    def base(self, keys: list[SortKey]) -> dict[str, Any]:
        if self.include_deleted:
            return {"sync_lists": self.list_id}
        return {"list_id": self.list_id, **LIVE}

    def choices(
        self, name: str, equal: dict[str, Any], direction: SortDirection
    ) -> list[Any] | None:
        return None

    def bounds(self, name: str) -> Range:
        return [("$gt", self.since), ("$lte", self.until)] if name == "updated_at" else []

    def residual(self, keys: list[SortKey]) -> dict[str, Any]:
        return {}


Scope = _ListingScope | _ChangesScope


async def _page(
    scopes: list[Scope], keys: list[SortKey], after: list[Any] | None, depth: int, need: int
) -> list[StoredTodo]:
    """The first `need` todos of `scopes` after the sort key `after` (or from the start), in
    the order `keys`: each list walked by itself, then merged."""
    now = utc_now()
    found = await asyncio.gather(
        *(_scope_page(scope, keys, after, depth, need, now) for scope in scopes)
    )
    if len(found) == 1:
        return found[0]
    # A todo moved between two lists of a sync's scope is in both their sync_lists.
    merged = list({todo["_id"]: todo for todos in found for todo in todos}.values())
    return _in_order(merged, keys)[:need]


async def _scope_page(
    scope: Scope,
    keys: list[SortKey],
    after: list[Any] | None,
    depth: int,
    need: int,
    now: datetime,
) -> list[StoredTodo]:
    found: list[StoredTodo] = []
    width = _FIRST_WINDOW
    for segment in _segments(keys, after, scope.choices):
        if segment.depth > depth:
            continue
        # A segment starts as wide as the last one ended: as sparse as the list is.
        more, width = await _walk(scope, segment, keys, need - len(found), now, width)
        found += more
        if len(found) >= need:
            break
    return found


def _segments(
    keys: list[SortKey],
    after: list[Any] | None,
    choices: Callable[[str, dict[str, Any], SortDirection], list[Any] | None],
) -> list[_Segment]:
    """The index ranges holding everything after the sort key `after` (or everything), in
    order: for `updated`, first the todos updated at the same instant with a later `_id`, then
    those with a later `updated_at`."""

    def fresh(level: int, equal: dict[str, Any], depth: int) -> list[_Segment]:
        name, direction = keys[level]
        values = choices(name, equal, direction)
        if values is None:
            return [_Segment(depth, equal, name, direction == ASCENDING)]
        return [s for v in values for s in fresh(level + 1, {**equal, name: v}, depth)]

    def beyond(level: int, equal: dict[str, Any], position: list[Any]) -> list[_Segment]:
        name, direction = keys[level]
        values = choices(name, equal, direction)
        segments = []
        if level + 1 < len(keys):
            segments += beyond(level + 1, {**equal, name: position[level]}, position)
            if values is None:
                segments = [replace(s, whole=True) for s in segments]
        if values is None:
            segments.append(_Segment(level, equal, name, direction == ASCENDING, position[level]))
        elif position[level] in values:
            later = values[values.index(position[level]) + 1 :]
            segments += [s for v in later for s in fresh(level + 1, {**equal, name: v}, level)]
        return segments

    return fresh(0, {}, 0) if after is None else beyond(0, {}, after)


async def _walk(
    scope: Scope,
    segment: _Segment,
    keys: list[SortKey],
    need: int,
    now: datetime,
    first: timedelta,
) -> tuple[list[StoredTodo], timedelta]:
    """Up to `need` todos of one segment, in order, read in widening windows (see above), and
    the width of the last window."""
    name, ascending = segment.field, segment.ascending
    bounds = scope.bounds(name)
    if segment.after is not None:
        bounds = [*bounds, ("$gt" if ascending else "$lt", segment.after)]
    created = scope.list_id.generation_time
    margin = _DUE_MARGIN if name == "due_at" else timedelta(0)
    low, high = created - margin, now + max(margin, _FIRST_WINDOW)
    for op, value in scope.bounds(name):
        if op in {"$gt", "$gte"}:
            low = max(low, _instant(value))
        else:
            high = min(high, _instant(value))
    if segment.after is not None:
        anchor = _instant(segment.after)
    elif ascending:
        anchor = max(created, low)
    else:
        anchor = min(now, high)
    base = {**scope.base(keys), **segment.equal}
    residual = scope.residual(keys)
    found: list[StoredTodo] = []
    width, edge, near = first, anchor, bounds
    while True:
        try:
            edge = edge + width if ascending else edge - width
            last = segment.whole or (edge >= high if ascending else edge <= low)
        except OverflowError:
            last = True
        window = near if last else [*near, ("$lt" if ascending else "$gte", _edge(name, edge))]
        found += await _read(
            {**base, name: _range(window)} if window else base, residual, keys, need - len(found)
        )
        if len(found) >= need or last:
            return found, width
        near = [*bounds, ("$gte" if ascending else "$lt", _edge(name, edge))]
        if found:
            wanted = abs(edge - anchor) * (_OVERSHOOT * (need - len(found)) / len(found))
            width = min(max(wanted, width * _MIN_GROWTH), width * _MAX_GROWTH)
        else:
            width *= _MAX_GROWTH


def _instant(value: Any) -> datetime:
    """Where a range key's value lies in time (an ObjectId holds its creation second)."""
    return value.generation_time if isinstance(value, ObjectId) else as_utc(value)


def _edge(name: str, instant: datetime) -> Any:
    """A window's edge as a value of the key `name`."""
    return ObjectId.from_datetime(instant) if name == "_id" else instant


def _range(pairs: Range) -> dict[str, Any]:
    """The tightest of the bounds `pairs` on one field, as query operators, each exclusive.

    SecantusDB uses only the last of two lower (or upper) bounds for its index range, and it
    loses the entries equal to an inclusive bound that ends a range in the index's order (a
    `$gte` on a descending field, a `$lte` on an ascending one) when more fields follow in the
    index. An inclusive bound is sent as the exclusive one next to it (ObjectIds are
    integers, instants are stored to the millisecond), which means the same on every server.
    """
    lower = [(v, op) for op, v in pairs if op in {"$gt", "$gte"}]
    upper = [(v, op) for op, v in pairs if op in {"$lt", "$lte"}]
    ops: dict[str, Any] = {}
    if lower:
        value, op = max(lower, key=lambda b: (b[0], b[1] == "$gt"))
        ops.update(_exclusive(op, value, -1))
    if upper:
        value, op = min(upper, key=lambda b: (b[0], b[1] == "$lte"))
        ops.update(_exclusive(op, value, 1))
    return ops


_MS = timedelta(milliseconds=1)


def _exclusive(op: str, value: Any, step: int) -> dict[str, Any]:
    """`{op: value}` with `op` made exclusive: `$gte v` as `$gt` the value just below `v`,
    `$lte v` as `$lt` the one just above (`step` -1 or 1)."""
    if op in {"$gt", "$lt"}:
        return {op: value}
    strict = "$gt" if step < 0 else "$lt"
    try:
        if isinstance(value, ObjectId):
            return {strict: ObjectId((int.from_bytes(value.binary) + step).to_bytes(12))}
        if isinstance(value, datetime):
            # The millisecond the stored values are at: v rounded up (down) to it, -1 (+1) ms.
            partial = timedelta(microseconds=value.microsecond % 1000)
            if step < 0:
                return {strict: value - partial + (_MS if partial else timedelta(0)) - _MS}
            return {strict: value - partial + _MS}
    except (OverflowError, ValueError):
        pass  # the first or last value there is: nothing lies beyond it to lose
    return {op: value}


async def _read(
    query: dict[str, Any], residual: dict[str, Any], keys: list[SortKey], limit: int
) -> list[StoredTodo]:
    """Up to `limit` stored todos matching `query` and `residual`, in the order `keys`, as raw
    documents. `query` alone selects the index range: the residual filters are a second
    `$match` stage."""
    sort = [(name, int(direction)) for name, direction in keys]
    collection = Todo.get_pymongo_collection()
    if not residual:
        documents: list[StoredTodo] = await collection.find(query, sort=sort, limit=limit).to_list(
            limit
        )
        return documents
    pipeline: list[dict[str, Any]] = [
        {"$match": query},
        {"$match": residual},
        {"$sort": dict(sort)},
        {"$limit": limit},
    ]
    aggregated: list[StoredTodo] = await (await collection.aggregate(pipeline)).to_list(limit)
    return aggregated


def _in_order(todos: list[StoredTodo], keys: list[SortKey]) -> list[StoredTodo]:
    """`todos` sorted by `keys` as the database sorts them (no due sorts after every due)."""
    ordered = list(todos)
    for name, direction in reversed(keys):
        ordered.sort(key=_sort_value(name), reverse=direction == DESCENDING)
    return ordered


def _sort_value(name: str) -> Callable[[StoredTodo], tuple[bool, Any]]:
    def value(todo: StoredTodo) -> tuple[bool, Any]:
        found = todo.get(name)
        return (found is None, 0 if found is None else found)

    return value


def list_query(*, lists: Lists, filters: TodoFilters, keys: list[SortKey]) -> dict[str, Any]:
    """The index range of the first window of a listing of one list from its start (exposed
    so tests can `explain` it)."""
    scope = _ListingScope(lists[0], filters)
    segment = _segments(keys, None, scope.choices)[0]
    edge = utc_now() - _FIRST_WINDOW
    if segment.ascending:
        return {**scope.base(keys), **segment.equal}
    return {
        **scope.base(keys),
        **segment.equal,
        segment.field: {"$gte": _edge(segment.field, edge)},
    }


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


def _cursor_start(
    cursor: str, query_fingerprint: str, keys: list[SortKey]
) -> tuple[list[Any], int]:
    """The sort key a cursor made for this query carries, typed for a query, and the depth of
    the segments its page's next item showed to be empty (see _next_start); else BadRequest."""
    try:
        key, extra = decode_cursor(cursor, query_fingerprint)
        if len(key) != len(keys):
            raise InvalidCursorError("wrong key length")
        depth = extra.get("t", len(keys) - 1)
        if type(depth) is not int or depth not in range(len(keys)):
            raise InvalidCursorError("t")
        return [
            _key_value_from_json(name, value) for (name, _), value in zip(keys, key, strict=True)
        ], depth
    except CursorMismatchError as exc:
        raise BadRequest("This cursor belongs to a listing with other filters or sort") from exc
    except InvalidCursorError as exc:
        raise BadRequest("Invalid cursor") from exc


def _next_start(last: StoredTodo, following: StoredTodo, keys: list[SortKey]) -> dict[str, int]:
    """What the next page may skip: the item after `last` (the first of the next page) shares
    only its first `t` sort keys, so no todo shared more of them with `last` and came after it
    when this page was read. The next page skips the segments holding those (for `updated`,
    the todos updated at the same instant as `last`): an empty read each."""
    shared = 0
    for name, _ in keys[:-1]:
        if last.get(name) != following.get(name):
            break
        shared += 1
    return {"t": shared}


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
