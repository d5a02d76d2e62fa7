"""Limits and races: MAX_TODOS_PER_LIST under parallel creates, parallel signups (parallel
moves and creates by several members: test_moves.py)."""

import asyncio
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.app import create_app
from service.config import Settings
from service.db import MongoDatabase
from service.lists import service as lists_service
from service.lists.models import TodoList
from service.todos import store as todos_store
from tests.todos.conftest import Team, delete_list, live_todos, todo_count
from tests.utils import DEFAULT_PASSWORD, app_client, create_account, create_list, create_todo


async def test_todo_limit_is_409_and_deleting_frees_a_slot(
    settings: Settings, database: MongoDatabase
) -> None:
    app = create_app(settings.model_copy(update={"max_todos_per_list": 3}), database=database)
    async with app_client(app) as client:
        user = await create_account(client)
        todos = [await create_todo(client, user, f"t{i}") for i in range(3)]
        response = await client.post(
            "/api/todos", json={"text": "one too many"}, headers=user.headers
        )
        assert response.status_code == 409
        assert response.json() == {
            "detail": "Todo limit reached: at most 3 todos per list; delete some first."
        }
        deleted = await client.delete(f"/api/todos/{todos[0]['id']}", headers=user.headers)
        assert deleted.status_code == 204
        await create_todo(client, user, "fits again")
        # Another list's limit is its own, and so is another user's.
        other_list = await create_list(client, user, "Other")
        await create_todo(client, user, "in the other list", list_id=other_list["id"])
        other = await create_account(client)
        await create_todo(client, other)


async def test_todo_limit_holds_under_parallel_creates(
    settings: Settings, database: MongoDatabase
) -> None:
    # Each refused create also withdraws its todo: on a busy machine the last of the 20 can
    # wait past the 2 s budget (503), as in the test below; the budget has its own tests.
    overrides = {"max_todos_per_list": 5, "request_db_budget_ms": 30_000}
    app = create_app(settings.model_copy(update=overrides), database=database)
    async with app_client(app) as client:
        user = await create_account(client)
        responses = await asyncio.gather(
            *(
                client.post("/api/todos", json={"text": f"t{i}"}, headers=user.headers)
                for i in range(20)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 5 + [409] * 15
        listed = await client.get("/api/mytodos", headers=user.headers)
        assert len(listed.json()) == 5
        stored = await TodoList.get(PydanticObjectId(user.id))
        assert stored is not None
        assert stored.todo_count == 5


# What this proves is that none of 100 parallel creates is lost or doubled. The last of them
# waits behind the other 99 for the database: on the wire tier's one shared server, late in the
# full suite, that wait can pass the 2 s production budget (503, seen in CI, never when the file
# runs alone). The budget has its own tests (test_budget.py); here it is lifted.
@pytest.mark.parametrize("settings_overrides", [{"request_db_budget_ms": 30_000}])
async def test_100_parallel_creates_make_100_todos(client: AsyncClient) -> None:
    user = await create_account(client)
    responses = await asyncio.gather(
        *(
            client.post("/api/todos", json={"text": f"todo {i}"}, headers=user.headers)
            for i in range(100)
        )
    )
    assert [r.status_code for r in responses] == [201] * 100
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 100
    listed = await client.get("/api/mytodos", params={"limit": 1000}, headers=user.headers)
    assert {todo["id"] for todo in listed.json()} == ids


# All 50 come from one client IP at once: lift the per-IP signup limit and the password hash
# queue (PASSWORD_HASH_QUEUE would answer 503) so that only the race counts. With the tests'
# cheap hashing the 50 inserts reach the database together, and on a busy machine the last
# can wait past the 2 s budget (503), as in the test above: lifted likewise.
@pytest.mark.parametrize(
    "settings_overrides",
    [{"signup_max_per_ip": 1000, "password_hash_queue": 100, "request_db_budget_ms": 30_000}],
)
async def test_50_parallel_signups_with_one_email_make_one_user(
    client: AsyncClient, database: MongoDatabase
) -> None:
    body = {"email": "race@example.com", "fname": "A", "lname": "B", "password": DEFAULT_PASSWORD}
    responses = await asyncio.gather(*(client.post("/api/users", json=body) for _ in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 49
    assert await database["users"].count_documents({"email": "race@example.com"}) == 1


# A list deleted by its owner while a member's write into it is under way: the member's
# memberships were read (and the list's slot taken) before the deletion, the write lands
# after the deletion tombstoned the list's todos. Each test runs the owner's DELETE at that
# very moment, from inside the member's request.


async def test_a_todo_created_as_its_list_is_deleted_does_not_stay_in_it(
    client: AsyncClient, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_todo = todos_store.insert_todo

    async def list_deleted_first(**kwargs: Any) -> Any:
        await delete_list(client, team.owner, team.list_id)
        return await insert_todo(**kwargs)

    monkeypatch.setattr(todos_store, "insert_todo", list_deleted_first)
    response = await client.post(
        "/api/todos", json={"text": "late", "list_id": team.list_id}, headers=team.editor.headers
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "List not found"}
    assert await live_todos(team.list_id) == 0


async def test_a_todo_moved_as_its_target_list_is_deleted_does_not_stay_in_it(
    client: AsyncClient, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    todo = await create_todo(client, team.editor, "mine")
    move_todo = todos_store.move_todo

    async def list_deleted_first(**kwargs: Any) -> Any:
        await delete_list(client, team.owner, team.list_id)
        return await move_todo(**kwargs)

    monkeypatch.setattr(todos_store, "move_todo", list_deleted_first)
    response = await client.patch(
        f"/api/todos/{todo['id']}", json={"list_id": team.list_id}, headers=team.editor.headers
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "List not found"}
    assert await live_todos(team.list_id) == 0
    # It went with the list, as if it had moved just before the deletion; the editor's own
    # list gave its slot back.
    assert await live_todos(team.editor.id) == 0
    assert await todo_count(team.editor.id) == 0


async def test_creating_in_a_list_deleted_since_the_request_began_is_404_not_full(
    client: AsyncClient, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserve_todo_slot = lists_service.reserve_todo_slot

    async def list_deleted_first(**kwargs: Any) -> bool:
        await delete_list(client, team.owner, team.list_id)
        return await reserve_todo_slot(**kwargs)

    monkeypatch.setattr(lists_service, "reserve_todo_slot", list_deleted_first)
    response = await client.post(
        "/api/todos", json={"text": "late", "list_id": team.list_id}, headers=team.editor.headers
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "List not found"}


async def test_a_todo_created_just_before_its_list_is_deleted_goes_with_it(
    client: AsyncClient, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The create's slot is taken while the list is live, then the deletion comes: its sweep
    # of the list's todos takes this one (no check of the list after the create).
    reserve_todo_slot = lists_service.reserve_todo_slot

    async def list_deleted_after(**kwargs: Any) -> bool:
        reserved = await reserve_todo_slot(**kwargs)
        await delete_list(client, team.owner, team.list_id)
        return reserved

    monkeypatch.setattr(lists_service, "reserve_todo_slot", list_deleted_after)
    response = await client.post(
        "/api/todos", json={"text": "just in", "list_id": team.list_id}, headers=team.editor.headers
    )
    assert response.status_code == 201
    assert await live_todos(team.list_id) == 0


async def test_a_create_refused_for_a_full_list_leaves_only_a_tombstone(
    settings: Settings, database: MongoDatabase
) -> None:
    app = create_app(settings.model_copy(update={"max_todos_per_list": 1}), database=database)
    async with app_client(app) as client:
        user = await create_account(client)
        await create_todo(client, user, "fits")
        response = await client.post("/api/todos", json={"text": "refused"}, headers=user.headers)
        assert response.status_code == 409
        assert await live_todos(user.id) == 1
        assert await todo_count(user.id) == 1
        # Written before its slot was refused, then withdrawn like any deleted todo: delta
        # sync reports it deleted to a client that saw it in between.
        withdrawn = await database["todos"].find_one({"deleted_at": {"$ne": None}})
        assert withdrawn is not None
        assert "text" not in withdrawn


async def test_an_idempotent_create_refused_for_a_full_list_can_be_retried(
    settings: Settings, database: MongoDatabase
) -> None:
    app = create_app(settings.model_copy(update={"max_todos_per_list": 1}), database=database)
    async with app_client(app) as client:
        user = await create_account(client)
        first = await create_todo(client, user, "fits")
        headers = {**user.headers, "Idempotency-Key": "retry-me"}
        body = {"text": "later"}
        refused = await client.post("/api/todos", json=body, headers=headers)
        assert refused.status_code == 409
        deleted = await client.delete(f"/api/todos/{first['id']}", headers=user.headers)
        assert deleted.status_code == 204
        retried = await client.post("/api/todos", json=body, headers=headers)
        assert retried.status_code == 201
        replayed = await client.post("/api/todos", json=body, headers=headers)
        assert replayed.json() == retried.json()
        assert await live_todos(user.id) == 1
        assert await todo_count(user.id) == 1
