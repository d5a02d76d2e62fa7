"""A page of 20 at 20 and at 20 000 todos of one user: p50 per sort, order, page and sync.

Seeds a user who joined three years ago (user, default list and membership cloned from one
signed up through the API, under an id of then) with N todos spread as a long-time user's
are: created evenly over the three years, updated mostly within days of their creation, 60 %
with a due date (a day from a week before to two months after creation), priorities
0/1/2/3 at 70/15/10/5 %, 80 % completed, 30 % tagged "work". Then times requests straight
into the ASGI app (bench/inprocess.py's driver, no HTTP server), p50 of `--calls` each:

- `first`: the first page; `next`: the page after it (the API's cursor); `middle`: the page
  after the todo half way down the order (a cursor made as the service makes them);
- delta sync since a day ago and since 29 days ago, with and without tombstones;
- the default order over 3 lists (the user gets two more, of N/10 todos, made a year ago)
  against the same listing of the default list alone.

    .venv/bin/python -m bench.page_sizes                        # this checkout
    PYTHONPATH=/work/main .venv/bin/python bench/page_sizes.py  # another checkout's service
"""

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager
from bson import ObjectId
from pymongo import AsyncMongoClient
from starlette.types import ASGIApp

from bench.database_url import database_url
from bench.inprocess import PASSWORD, request
from service.app import create_app
from service.config import Environment, Settings
from service.core.pagination import encode_cursor, fingerprint
from service.todos import listing
from service.todos.schemas import SortOrder, TodoSort

SORTS = ["created", "updated", "due", "priority"]
YEAR = timedelta(days=365)


def old_id(when: datetime) -> ObjectId:
    """A fresh ObjectId whose time is `when`."""
    return ObjectId(ObjectId.from_datetime(when).binary[:4] + random.randbytes(8))


def todos_of(list_id: ObjectId, count: int, since: datetime, now: datetime) -> list[dict[str, Any]]:
    """`count` todos of the list, spread as described above."""
    todos = []
    for i in range(count):
        created = since + (now - since) * random.random()
        updated = min(now, created + timedelta(days=random.expovariate(1 / 5)))
        due_at = None
        if random.random() < 0.6:
            day = (created + timedelta(days=random.randint(-7, 60))).date()
            due_at = datetime(day.year, day.month, day.day, tzinfo=UTC)
        completed = random.random() < 0.8
        todos.append(
            {
                "_id": old_id(created),
                "list_id": list_id,
                "created_by": list_id,
                "sync_lists": [list_id],
                "moved_from": None,
                "text": f"Todo number {i:06d}, a realistic short line of text",
                "notes": "",
                "completed": completed,
                "completed_at": updated if completed else None,
                "due": None if due_at is None else due_at.date().isoformat(),
                "due_at": due_at,
                "due_rank": 1 if due_at is None else 0,
                "priority": random.choices([0, 1, 2, 3], [70, 15, 10, 5])[0],
                "tags": ["work"] if random.random() < 0.3 else [],
                "created_at": created,
                "updated_at": updated,
                "version": 1,
                "deleted_at": None,
            }
        )
    return todos


async def old_user(app: ASGIApp, database: Any, joined: datetime) -> tuple[ObjectId, str]:
    """A user (with their default list) who joined at `joined`, logged in: (id, token)."""
    json_type = {"content-type": "application/json"}
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "fname": "B", "lname": "B", "password": PASSWORD}
    status, _ = await request(
        app, "POST", "/api/users", headers=json_type, body=json.dumps(body).encode()
    )
    assert status == 201, status
    user = await database.users.find_one({"email": email})
    new_id, email = old_id(joined), "old-" + email
    default = await database.lists.find_one({"_id": user["_id"]})
    membership = await database.memberships.find_one({"user_id": user["_id"]})
    await database.users.insert_one({**user, "_id": new_id, "email": email})
    await database.lists.insert_one({**default, "_id": new_id, "owner_id": new_id})
    await database.memberships.insert_one(
        {**membership, "_id": ObjectId(), "user_id": new_id, "list_id": new_id}
    )
    form = urllib.parse.urlencode({"username": email, "password": PASSWORD}).encode()
    status, answer = await request(
        app,
        "POST",
        "/api/token",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=form,
    )
    assert status == 200, status
    return new_id, json.loads(answer)["access_token"]


async def add_list(database: Any, user_id: ObjectId, created: datetime, todos: int) -> ObjectId:
    """Another list of the user's, made at `created`, with `todos` todos."""
    default = await database.lists.find_one({"_id": user_id})
    list_id = old_id(created)
    await database.lists.insert_one(
        {**default, "_id": list_id, "is_default": False, "todo_count": todos}
    )
    membership = await database.memberships.find_one({"list_id": user_id})
    await database.memberships.insert_one({**membership, "_id": ObjectId(), "list_id": list_id})
    await insert(database, todos_of(list_id, todos, created, datetime.now(UTC)))
    return list_id


async def insert(database: Any, todos: list[dict[str, Any]]) -> None:
    for start in range(0, len(todos), 1000):
        await database.todos.insert_many(todos[start : start + 1000], ordered=False)


def sort_value(value: Any) -> tuple[bool, Any]:
    """A key value as the database sorts it: nulls (no due) apart from the rest."""
    return (value is None, 0 if value is None else value)


def middle_cursor(todos: list[dict[str, Any]], user_id: ObjectId, sort: str, order: str) -> str:
    """The cursor of the page after the todo half way down the listing's order."""
    keys = listing.sort_keys(TodoSort(sort), SortOrder(order))
    ordered = list(todos)
    for name, direction in reversed(keys):
        ordered.sort(key=lambda t: sort_value(t[name]), reverse=int(direction) == -1)
    scope = {"user": str(user_id), "list": None}
    filters = dict.fromkeys(("completed", "q", "due_before", "due_after", "priority"))
    query: dict[str, Any] = {**scope, "sort": sort, "order": order, **filters, "tags": []}
    key = [listing._key_value_to_json(ordered[len(ordered) // 2][name]) for name, _ in keys]
    return encode_cursor(key, fingerprint(query))


# --cases: only the cases whose names start with one of these (all when empty).
CASES: list[str] = []


async def p50(app: ASGIApp, path: str, token: str, calls: int) -> float:
    headers = {"authorization": f"Bearer {token}"}
    times = []
    for i in range(calls + 2):
        started = time.perf_counter()
        status, body = await request(app, "GET", path, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        assert status == 200, (path, status, body[:300])
        if i >= 2:  # two warm-up calls
            times.append(elapsed)
    return statistics.median(times)


def wanted(case: str) -> bool:
    if CASES and not any(case.startswith(prefix) for prefix in CASES):
        return False
    print(case, file=sys.stderr, flush=True)
    return True


async def next_cursor(app: ASGIApp, path: str, token: str) -> str | None:
    status, body = await request(app, "GET", path, headers={"authorization": f"Bearer {token}"})
    assert status == 200, (path, status)
    cursor: str | None = json.loads(body)["next_cursor"]
    return cursor


async def p50_next(app: ASGIApp, path: str, token: str, calls: int) -> float | None:
    """The p50 of the page after the first; None if there is none."""
    cursor = await next_cursor(app, path, token)
    return None if cursor is None else await p50(app, f"{path}&cursor={cursor}", token, calls)


async def measure_size(
    app: ASGIApp, database: Any, size: int, calls: int, out: dict[str, float | None]
) -> None:
    now = datetime.now(UTC)
    joined = now - 3 * YEAR
    user_id, token = await old_user(app, database, joined)
    todos = todos_of(user_id, size, joined, now)
    await insert(database, todos)
    await database.lists.update_one({"_id": user_id}, {"$set": {"todo_count": size}})
    for sort in SORTS:
        for order in ("desc", "asc"):
            path = f"/api/todos?limit=20&sort={sort}&order={order}"
            if wanted(f"{sort} {order} first"):
                out[f"{sort} {order} first"] = await p50(app, path, token, calls)
            if wanted(f"{sort} {order} next"):
                out[f"{sort} {order} next"] = await p50_next(app, path, token, calls)
            cursor = middle_cursor(todos, user_id, sort, order)
            if wanted(f"{sort} {order} middle"):
                out[f"{sort} {order} middle"] = await p50(
                    app, f"{path}&cursor={cursor}", token, calls
                )
    for days in (1, 29):
        since = urllib.parse.quote((now - timedelta(days=days)).isoformat())
        for tombstones in ("false", "true"):
            path = f"/api/todos?limit=20&updated_since={since}&include_deleted={tombstones}"
            name = f"sync {days}d{' +deleted' if tombstones == 'true' else ''}"
            if wanted(f"{name} first"):
                out[f"{name} first"] = await p50(app, path, token, calls)
            if wanted(f"{name} next"):
                out[f"{name} next"] = await p50_next(app, path, token, calls)
    if wanted("1 list (list_id)"):
        out["1 list (list_id)"] = await p50(
            app, f"/api/todos?limit=20&list_id={user_id}", token, calls
        )
    if not (wanted("3 lists first") or wanted("3 lists next")):
        return
    for _ in range(2):
        await add_list(database, user_id, now - YEAR, max(1, size // 10))
    if not CASES or any("3 lists first".startswith(c) for c in CASES):
        out["3 lists first"] = await p50(app, "/api/todos?limit=20", token, calls)
    if not CASES or any("3 lists next".startswith(c) for c in CASES):
        out["3 lists next"] = await p50_next(app, "/api/todos?limit=20", token, calls)


async def measure(url: str, args: argparse.Namespace) -> dict[int, dict[str, float | None]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    results: dict[int, dict[str, float | None]] = {}
    settings = Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        secret_key=uuid.uuid4().hex * 2,  # type: ignore[arg-type]  # validated into SecretStr
        data_dir=Path(tempfile.mkdtemp()),
        log_level="WARNING",
        # The listings before windows took seconds at 20 000 todos on a busy machine.
        request_db_budget_ms=60_000,
    )
    for size in args.sizes:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        try:
            async with LifespanManager(create_app(settings, database=client[name])) as manager:
                results[size] = {}
                await measure_size(manager.app, client[name], size, args.calls, results[size])
        finally:
            await client.drop_database(name)
    await client.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 20_000])
    parser.add_argument("--calls", type=int, default=30, help="timed calls per case")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--cases", default="", help="comma-separated case name prefixes")
    args = parser.parse_args()
    random.seed(args.seed)
    CASES.extend(c for c in args.cases.split(",") if c)
    with database_url() as url:
        results = asyncio.run(measure(url, args))
    small, large = min(results), max(results)
    print(f"| case | p50 at {small} (ms) | p50 at {large} (ms) | ratio |")
    print("|---|---|---|---|")
    for case, value in results[large].items():
        at_small = results[small].get(case)
        shown = "n/a" if at_small is None else f"{at_small:.1f}"
        if at_small is None:
            # No second page at the small size: compared with its first page.
            at_small = results[small].get(case.replace(" next", " first"))
            shown += f" ({at_small:.1f} first)"
        if value is None or at_small is None:
            print(f"| {case} | {shown} | n/a | |")
        else:
            print(f"| {case} | {shown} | {value:.1f} | {value / at_small:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
