"""POST /api/import is all or nothing: one transaction on the wire tier (SecantusDB has them),
compensating deletes on the mock tier (a standalone server), and parallel imports never get
past a limit."""

import asyncio
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.db import MongoDatabase
from service.lists.models import Membership, TodoList
from service.todos.models import Todo
from tests.transfer.conftest import export_file, fail_second_insert, todo
from tests.utils import UserAccount, create_todo


async def everything_stored() -> list[list[dict[str, Any]]]:
    """Every list, membership and todo as stored, tombstones and counters included."""
    return [
        await document.get_pymongo_collection().find({}, sort=[("_id", 1)]).to_list(None)
        for document in (TodoList, Membership, Todo)
    ]


async def default_list(user: UserAccount) -> dict[str, Any]:
    """The user's default list as stored: its owned-list and todo counters."""
    stored: dict[str, Any] | None = await TodoList.get_pymongo_collection().find_one(
        {"_id": PydanticObjectId(user.id)}
    )
    assert stored is not None
    return stored


FAILING_FILE = export_file(
    {"name": "Inbox", "default": True, "todos": [todo("a"), todo("b")]},
    {"name": "First", "todos": [todo("c")]},
    {"name": "Second", "todos": [todo("d")]},
)


@pytest.mark.wire_only  # transactions
async def test_a_failure_inside_the_transaction_leaves_nothing_at_all(
    client: AsyncClient,
    alice: UserAccount,
    database: MongoDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await create_todo(client, alice, "already here")
    before = await everything_stored()
    fail_second_insert(monkeypatch)
    async with await database.watch() as changes:
        response = await client.post("/api/import", json=FAILING_FILE, headers=alice.headers)
        assert response.status_code >= 500
        # No list, membership or todo, not even as a tombstone; the default list's counters
        # (owned lists, todo slots) as they were.
        assert await everything_stored() == before
        # Nobody ever saw any of it: no change of the import reached a change stream (the
        # feed's and lists sync's source). A write after it marks where the stream is.
        await database["marker"].insert_one({"after": "import"})
        seen = []
        while (change := await changes.try_next()) is None or change["ns"]["coll"] != "marker":
            if change is not None:
                seen.append(change)
        assert seen == []


async def test_a_failure_mid_import_leaves_no_live_list_or_todo(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both tiers: the transaction on the wire, compensating deletes on the mock (their
    tombstones stay there, for sync to report)."""
    await create_todo(client, alice, "already here")
    counters = await default_list(alice)
    fail_second_insert(monkeypatch)
    response = await client.post("/api/import", json=FAILING_FILE, headers=alice.headers)
    assert response.status_code >= 500
    lists = await client.get("/api/lists", headers=alice.headers)
    assert [each["name"] for each in lists.json()["items"]] == ["Inbox"]
    listed = await client.get("/api/todos", headers=alice.headers)
    assert [each["text"] for each in listed.json()["items"]] == ["already here"]
    after = await default_list(alice)
    assert (after["owned_lists"], after["todo_count"]) == (1, 1)
    assert (counters["owned_lists"], counters["todo_count"]) == (1, 1)


async def _parallel_imports(
    client: AsyncClient, user: UserAccount, body: dict[str, Any], count: int
) -> list[int]:
    responses = await asyncio.gather(
        *(client.post("/api/import", json=body, headers=user.headers) for _ in range(count))
    )
    return [response.status_code for response in responses]


@pytest.mark.parametrize("settings_overrides", [{"max_lists_per_user": 6}])
async def test_parallel_imports_never_own_more_than_max_lists_per_user(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = export_file({"name": "A", "todos": [todo()]}, {"name": "B", "todos": [todo()]})
    statuses = await _parallel_imports(client, alice, body, 5)
    # The default list and two imports of two lists fit in six; a third doesn't.
    assert sorted(statuses) == [201, 201, 409, 409, 409]
    lists = await client.get("/api/lists", headers=alice.headers)
    names = sorted(each["name"] for each in lists.json()["items"])
    assert names == ["A", "A", "B", "B", "Inbox"]  # each import whole, or not at all
    assert (await default_list(alice))["owned_lists"] == 5


@pytest.mark.parametrize("settings_overrides", [{"max_todos_per_list": 5}])
async def test_parallel_imports_never_fill_a_list_past_max_todos_per_list(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = export_file({"name": "Inbox", "default": True, "todos": [todo("x"), todo("y")]})
    statuses = await _parallel_imports(client, alice, body, 4)
    assert sorted(statuses) == [201, 201, 409, 409]
    listed = await client.get("/api/todos", headers=alice.headers)
    texts = sorted(each["text"] for each in listed.json()["items"])
    assert texts == ["x", "x", "y", "y"]  # two whole imports, nothing of the others
    assert (await default_list(alice))["todo_count"] == 4
