"""Pages read in windows (listing.py): complete and in order whatever the spread of the keys.

Todos are inserted straight into the database with the times they would have after years of
use (gaps of years, todos older than their list, dues far off, ties), then every page is
compared with the order computed here.
"""

import base64
import functools
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient

from service.todos.listing import sort_keys
from service.todos.models import Todo
from service.todos.schemas import SortOrder, TodoSort
from tests.utils import UserAccount, create_list

SORTS = [(sort, order) for sort in TodoSort for order in SortOrder]
DAY = timedelta(days=1)
YEAR = timedelta(days=365)


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def stored(
    list_id: str,
    created: datetime,
    *,
    updated: datetime | None = None,
    due: datetime | None = None,
    priority: int = 0,
    completed: bool = False,
    tags: list[str] | None = None,
    text: str = "todo",
    deleted: bool = False,
) -> dict[str, Any]:
    """A todo as the service stores it, created (its `_id` too) at `created`."""
    owner = ObjectId(list_id)
    updated = updated or created
    return {
        "_id": ObjectId(ObjectId.from_datetime(created).binary[:4] + os.urandom(8)),
        "list_id": owner,
        "created_by": owner,
        "sync_lists": [owner],
        "moved_from": None,
        "text": text,
        "notes": "",
        "completed": completed,
        "completed_at": updated if completed else None,
        "due": None if due is None else due.date().isoformat(),
        "due_at": due,
        "due_rank": 1 if due is None else 0,
        "priority": priority,
        "tags": tags or [],
        "created_at": created,
        "updated_at": updated,
        "version": 1,
        "deleted_at": updated if deleted else None,
    }


def midnight(instant: datetime) -> datetime:
    return instant.replace(hour=0, minute=0, second=0, microsecond=0)


def spread(list_id: str, now: datetime) -> list[dict[str, Any]]:
    """Todos of years of use: most recent, some a year or nine back (older than the list,
    as moved in), one in 1990; dues from 1950 to 2090 or none; every priority; and a tie of
    six todos updated at one instant, due the same day, of one priority."""
    todos = [stored(list_id, now - timedelta(minutes=7 * i), priority=i % 4) for i in range(10)]
    todos += [
        stored(
            list_id,
            now - YEAR - i * DAY,
            updated=now - timedelta(days=40 + i),
            due=midnight(now + (i - 2) * YEAR),
            priority=(i + 1) % 4,
        )
        for i in range(5)
    ]
    todos += [
        stored(list_id, now - 9 * YEAR + i * DAY, due=midnight(now - 9 * YEAR), priority=3)
        for i in range(3)
    ]
    todos.append(
        stored(list_id, datetime(1990, 5, 1, tzinfo=UTC), due=datetime(1950, 1, 1, tzinfo=UTC))
    )
    todos.append(stored(list_id, now - 2 * YEAR, due=datetime(2090, 1, 1, tzinfo=UTC), priority=2))
    tie = now - 3 * YEAR
    todos += [
        stored(list_id, tie - i * DAY, updated=tie, due=midnight(tie), priority=1) for i in range(6)
    ]
    return todos


def sort_value(name: str, todo: dict[str, Any]) -> tuple[bool, Any]:
    """A key of a todo as the database sorts it: no due apart from (after) every due."""
    return (todo[name] is None, 0 if todo[name] is None else todo[name])


def in_order(todos: list[dict[str, Any]], sort: TodoSort, order: SortOrder) -> list[str]:
    """The ids of `todos` in the order of the listing `sort`, `order`."""
    ordered = list(todos)
    for name, direction in reversed(sort_keys(sort, order)):
        ordered.sort(key=functools.partial(sort_value, name), reverse=int(direction) == -1)
    return [str(t["_id"]) for t in ordered]


async def insert(todos: list[dict[str, Any]]) -> None:
    await Todo.get_pymongo_collection().insert_many(todos)


async def every_page(
    client: AsyncClient,
    user: UserAccount,
    params: dict[str, Any],
    between: Callable[[int], Awaitable[None]] | None = None,
) -> list[str]:
    """The ids of every page of a listing (or sync), in order."""
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/todos", params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert len(page["items"]) <= params["limit"]
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        if between is not None:
            await between(pages)


@pytest.mark.parametrize(("sort", "order"), SORTS, ids=[f"{s}-{o}" for s, o in SORTS])
async def test_pages_are_complete_and_ordered_across_gaps_of_years_and_ties(
    client: AsyncClient, alice: UserAccount, sort: TodoSort, order: SortOrder
) -> None:
    todos = spread(alice.id, _now())
    await insert(todos)
    for limit in (2, 5):
        params = {"sort": sort.value, "order": order.value, "limit": limit}
        assert await every_page(client, alice, params) == in_order(todos, sort, order)


@pytest.mark.parametrize(
    ("params", "matches"),
    [
        ({"completed": "true"}, lambda t: t["completed"]),
        ({"tag": "rare"}, lambda t: "rare" in t["tags"]),
        ({"q": "NEEDLE"}, lambda t: "needle" in t["text"]),
        ({"priority": 3}, lambda t: t["priority"] == 3),
        (
            {"due_after": "1980-01-01", "due_before": "2100-01-01"},
            lambda t: t["due_at"] is not None and t["due_at"].year >= 1980,
        ),
    ],
    ids=["completed", "tag", "q", "priority", "due"],
)
async def test_filters_that_rarely_match_find_every_match_in_order(
    client: AsyncClient,
    alice: UserAccount,
    params: dict[str, Any],
    matches: Callable[[dict[str, Any]], bool],
) -> None:
    now = _now()
    todos = spread(alice.id, now)
    # Three rare ones, years apart.
    for i, todo in enumerate([todos[1], todos[12], todos[16]]):
        todo.update(completed=True, tags=["rare"], text=f"a needle {i}")
    await insert(todos)
    wanted = [t for t in todos if matches(t)]
    assert wanted
    for sort, order in SORTS:
        query = {**params, "sort": sort.value, "order": order.value, "limit": 1}
        assert await every_page(client, alice, query) == in_order(wanted, sort, order), (
            sort,
            order,
        )


async def test_pages_of_several_lists_are_merged_in_order(
    client: AsyncClient, alice: UserAccount
) -> None:
    now = _now()
    errands = await create_list(client, alice, "Errands")
    todos = spread(alice.id, now) + spread(errands["id"], now - 2 * DAY)
    await insert(todos)
    for sort, order in SORTS:
        params = {"sort": sort.value, "order": order.value, "limit": 4}
        assert await every_page(client, alice, params) == in_order(todos, sort, order)


async def test_todos_deleted_or_moved_between_pages_leave_the_others_complete(
    client: AsyncClient, alice: UserAccount
) -> None:
    now = _now()
    errands = await create_list(client, alice, "Errands")
    todos = spread(alice.id, now)
    await insert(todos)
    expected = in_order(todos, TodoSort.UPDATED, SortOrder.DESC)
    changed: set[str] = set()

    async def change(page: int) -> None:
        # The todos two and four places after this page (limit 3): one deleted, one moved.
        if page * 3 + 3 >= len(expected):
            return
        deleted, moved = expected[page * 3 + 1], expected[page * 3 + 3]
        response = await client.delete(f"/api/todos/{deleted}", headers=alice.headers)
        assert response.status_code == 204, response.text
        response = await client.patch(
            f"/api/todos/{moved}", json={"list_id": errands["id"]}, headers=alice.headers
        )
        assert response.status_code == 200, response.text
        changed.update({deleted, moved})

    params = {"sort": "updated", "order": "desc", "limit": 3, "list_id": alice.id}
    seen = await every_page(client, alice, params, between=change)
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i not in changed] == [i for i in expected if i not in changed]


@pytest.mark.parametrize("include_deleted", [False, True])
async def test_delta_sync_is_complete_and_ordered_across_windows(
    client: AsyncClient, alice: UserAccount, include_deleted: bool
) -> None:
    now = _now()
    base = now - 29 * DAY
    todos = [
        stored(alice.id, base - YEAR, updated=base + timedelta(hours=5 * i**2), deleted=i % 3 == 0)
        for i in range(12)
    ]
    # A tie: five changed at one instant.
    todos += [
        stored(alice.id, base - i * DAY, updated=base + 3 * DAY, deleted=i % 2 == 0)
        for i in range(5)
    ]
    await insert(todos)
    since = (base - timedelta(hours=1)).isoformat()
    wanted = [t for t in todos if include_deleted or t["deleted_at"] is None]
    expected = in_order(wanted, TodoSort.UPDATED, SortOrder.ASC)
    for limit in (1, 4):
        params = {"updated_since": since, "include_deleted": include_deleted, "limit": limit}
        assert await every_page(client, alice, params) == expected


async def test_a_cursor_whose_skip_depth_is_out_of_range_is_a_400(
    client: AsyncClient, alice: UserAccount
) -> None:
    await insert(spread(alice.id, _now()))
    response = await client.get(
        "/api/todos", params={"sort": "updated", "limit": 2}, headers=alice.headers
    )
    cursor = response.json()["next_cursor"]
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert payload["x"] == {"t": 0}
    payload["x"]["t"] = 2  # updated has two keys: the depth is 0 or 1
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    response = await client.get(
        "/api/todos",
        params={"sort": "updated", "limit": 2, "cursor": forged},
        headers=alice.headers,
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid cursor"}
