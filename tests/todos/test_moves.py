"""Moving a todo to another list with PATCH or PUT: rights on both lists, exact counts, one
atomic write, and what a move leaves for sync and the feed (moved_from, sync_lists)."""

import asyncio
from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient

from service.todos import store
from service.todos.models import Todo
from tests.todos.conftest import Team, assert_counts_exact, snapshot, todo_count
from tests.utils import UserAccount, create_account, create_list, create_todo, share_list

LIST_NOT_FOUND = {"detail": "List not found"}
METHODS = ["PATCH", "PUT"]


def move_body(method: str, list_id: str, **fields: Any) -> dict[str, Any]:
    """A body that moves the todo (PUT needs every required field)."""
    if method == "PUT":
        return {"text": "moved", "completed": False, "list_id": list_id, **fields}
    return {"list_id": list_id, **fields}


async def move(
    client: AsyncClient,
    user: UserAccount,
    todo: dict[str, Any],
    list_id: str,
    method: str = "PATCH",
    **headers: str,
) -> Any:
    return await client.request(
        method,
        f"/api/todos/{todo['id']}",
        json=move_body(method, list_id),
        headers={**user.headers, **headers},
    )


async def stored(todo: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] | None = await Todo.get_pymongo_collection().find_one(
        {"_id": ObjectId(todo["id"])}
    )
    assert document is not None
    return document


@pytest.mark.parametrize("method", METHODS)
async def test_an_editor_moves_a_todo_between_two_lists(
    client: AsyncClient, team: Team, method: str
) -> None:
    own = team.editor.id  # the editor's default list
    todo = await create_todo(client, team.editor, "mine")
    response = await move(client, team.editor, todo, team.list_id, method)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["list_id"], body["created_by"], body["version"]) == (
        team.list_id,
        team.editor.id,
        2,
    )
    assert response.headers["etag"] == '"2"'
    # The members of the target see it now; it is no longer in the source.
    read = await client.get(f"/api/todos/{todo['id']}", headers=team.viewer.headers)
    assert read.json() == body
    assert (
        await client.get("/api/todos", params={"list_id": own}, headers=team.editor.headers)
    ).json()["items"] == []
    assert (await todo_count(own), await todo_count(team.list_id)) == (0, 1)
    document = await stored(todo)
    assert (document["moved_from"], document["sync_lists"]) == (
        ObjectId(own),
        [ObjectId(own), ObjectId(team.list_id)],
    )


async def test_a_move_can_change_fields_in_the_same_write(client: AsyncClient, team: Team) -> None:
    todo = await create_todo(client, team.owner, "draft")
    response = await client.patch(
        f"/api/todos/{todo['id']}",
        json={"list_id": team.list_id, "text": "final", "completed": True},
        headers=team.owner.headers,
    )
    body = response.json()
    assert (body["list_id"], body["text"], body["completed"], body["version"]) == (
        team.list_id,
        "final",
        True,
        2,
    )
    assert body["completed_at"] is not None


async def test_a_todo_moved_back_is_listed_once_in_sync_lists(
    client: AsyncClient, team: Team
) -> None:
    todo = await create_todo(client, team.owner)
    await move(client, team.owner, todo, team.list_id)
    back = await move(client, team.owner, todo, team.owner.id)
    assert back.json()["list_id"] == team.owner.id
    document = await stored(todo)
    assert document["sync_lists"] == [ObjectId(team.owner.id), ObjectId(team.list_id)]
    assert document["moved_from"] == ObjectId(team.list_id)
    await assert_counts_exact(team.owner.id, team.list_id)
    assert await todo_count(team.owner.id) == 1


async def test_a_put_without_list_id_keeps_the_todo_in_its_list(
    client: AsyncClient, team: Team
) -> None:
    todo = await create_todo(client, team.editor, list_id=team.list_id)
    response = await client.put(
        f"/api/todos/{todo['id']}",
        json={"text": "replaced", "completed": False},
        headers=team.editor.headers,
    )
    assert response.json()["list_id"] == team.list_id
    assert (await stored(todo))["moved_from"] is None


@pytest.mark.parametrize("method", METHODS)
async def test_naming_the_todos_own_list_is_no_move(
    client: AsyncClient, team: Team, method: str
) -> None:
    todo = await create_todo(client, team.editor, list_id=team.list_id)
    response = await move(client, team.editor, todo, team.list_id, method)
    assert response.status_code == 200
    assert response.json()["list_id"] == team.list_id
    document = await stored(todo)
    assert (document["moved_from"], document["sync_lists"]) == (None, [ObjectId(team.list_id)])
    assert await todo_count(team.list_id) == 1


async def test_a_patch_of_only_the_todos_own_list_changes_nothing(
    client: AsyncClient, team: Team
) -> None:
    todo = await create_todo(client, team.editor, list_id=team.list_id)
    response = await move(client, team.editor, todo, team.list_id)
    assert response.json() == todo


@pytest.mark.parametrize("method", METHODS)
async def test_a_target_list_the_caller_is_not_a_member_of_is_404(
    client: AsyncClient, team: Team, method: str
) -> None:
    todo = await create_todo(client, team.stranger)
    before = await snapshot()
    for target in (team.list_id, str(ObjectId())):  # another's list, and no list at all
        response = await move(client, team.stranger, todo, target, method)
        assert (response.status_code, response.json()) == (404, LIST_NOT_FOUND)
    assert await snapshot() == before


@pytest.mark.parametrize("method", METHODS)
async def test_moving_into_a_list_the_caller_only_views_is_403(
    client: AsyncClient, team: Team, method: str
) -> None:
    todo = await create_todo(client, team.viewer)
    before = await snapshot()
    response = await move(client, team.viewer, todo, team.list_id, method)
    assert response.status_code == 403
    assert await snapshot() == before


@pytest.mark.parametrize("method", METHODS)
async def test_moving_out_of_a_list_the_caller_only_views_is_403(
    client: AsyncClient, team: Team, method: str
) -> None:
    todo = await create_todo(client, team.owner, list_id=team.list_id)
    before = await snapshot()
    response = await move(client, team.viewer, todo, team.viewer.id, method)
    assert response.status_code == 403
    assert await snapshot() == before


async def test_moving_a_todo_the_caller_cannot_read_is_404(client: AsyncClient, team: Team) -> None:
    todo = await create_todo(client, team.owner)  # in the owner's default list
    before = await snapshot()
    response = await move(client, team.editor, todo, team.list_id)
    assert (response.status_code, response.json()) == (404, {"detail": "Todo not found"})
    assert await snapshot() == before


@pytest.mark.parametrize("settings_overrides", [{"max_todos_per_list": 2}])
@pytest.mark.parametrize("method", METHODS)
async def test_moving_into_a_full_list_is_409_and_changes_nothing(
    client: AsyncClient, team: Team, method: str
) -> None:
    for i in range(2):
        await create_todo(client, team.owner, f"t{i}", list_id=team.list_id)
    todo = await create_todo(client, team.editor)
    before = await snapshot()
    response = await move(client, team.editor, todo, team.list_id, method)
    assert response.status_code == 409
    assert "at most 2 todos per list" in response.json()["detail"]
    assert await snapshot() == before


@pytest.mark.parametrize("method", METHODS)
async def test_a_stale_if_match_is_412_and_gives_the_target_slot_back(
    client: AsyncClient, team: Team, method: str
) -> None:
    todo = await create_todo(client, team.editor)
    await client.patch(
        f"/api/todos/{todo['id']}", json={"notes": "v2"}, headers=team.editor.headers
    )
    before = await snapshot()
    response = await move(client, team.editor, todo, team.list_id, method, **{"If-Match": '"1"'})
    assert response.status_code == 412
    assert await snapshot() == before
    current = await move(client, team.editor, todo, team.list_id, method, **{"If-Match": '"2"'})
    assert current.status_code == 200
    assert current.json()["version"] == 3


async def test_a_todo_moved_away_between_read_and_write_is_explained(
    client: AsyncClient, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The move's write is conditional on the list the todo was read in: if another move got
    there first, the target's slot goes back and the answer says why."""
    todo = await create_todo(client, team.owner)
    elsewhere = await create_list(client, team.owner, "Elsewhere")
    real_move = store.move_todo
    raced: list[int] = []

    async def moved_first(**kwargs: Any) -> Any:
        if not raced:  # the other request's own move goes straight through
            raced.append(1)
            other = await client.patch(
                f"/api/todos/{todo['id']}",
                json={"list_id": elsewhere["id"]},
                headers=team.owner.headers,
            )
            raced.append(other.status_code)
        return await real_move(**kwargs)

    monkeypatch.setattr(store, "move_todo", moved_first)
    response = await move(client, team.owner, todo, team.list_id)
    monkeypatch.undo()
    assert raced == [1, 200]
    # Still a todo the caller may change, at no stale version: it changed under the write.
    assert response.status_code == 409
    assert "changed while it was being written" in response.json()["detail"]
    assert (await stored(todo))["list_id"] == ObjectId(elsewhere["id"])
    await assert_counts_exact(team.owner.id, team.list_id, elsewhere["id"])


# ---- races ----

# Parallel requests against one list: lift the request budget so that only the race counts
# (as in test_concurrency.py).
RACE_SETTINGS = {"max_todos_per_list": 5, "request_db_budget_ms": 30_000}


@pytest.mark.parametrize("settings_overrides", [RACE_SETTINGS])
async def test_parallel_moves_into_a_nearly_full_list_fill_it_exactly(
    client: AsyncClient, team: Team
) -> None:
    for i in range(3):
        await create_todo(client, team.owner, f"there {i}", list_id=team.list_id)
    todos = [await create_todo(client, team.editor, f"t{i}") for i in range(5)]
    responses = await asyncio.gather(
        *(move(client, team.editor, todo, team.list_id) for todo in todos)
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 409, 409, 409]
    assert (await todo_count(team.list_id), await todo_count(team.editor.id)) == (5, 3)
    await assert_counts_exact(team.list_id, team.editor.id)


@pytest.mark.parametrize("settings_overrides", [RACE_SETTINGS])
async def test_parallel_moves_of_one_todo_keep_every_count_exact(
    client: AsyncClient, alice: UserAccount
) -> None:
    targets = [(await create_list(client, alice, f"L{i}"))["id"] for i in range(4)]
    todo = await create_todo(client, alice)
    responses = await asyncio.gather(*(move(client, alice, todo, target) for target in targets))
    # Each move either happened (from wherever the todo then was) or lost the race (409).
    assert {r.status_code for r in responses} <= {200, 409}
    assert 200 in {r.status_code for r in responses}
    await assert_counts_exact(alice.id, *targets)
    assert sum([await todo_count(list_id) for list_id in (alice.id, *targets)]) == 1


@pytest.mark.parametrize("settings_overrides", [RACE_SETTINGS])
async def test_parallel_creates_by_several_members_respect_the_list_limit(
    client: AsyncClient, team: Team
) -> None:
    members = [team.owner, team.editor, await create_account(client)]
    await share_list(client, team.owner, team.list_id, members[2], "editor")
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/todos", json={"text": f"t{i}", "list_id": team.list_id}, headers=user.headers
            )
            for i in range(6)
            for user in members
        )
    )
    assert sorted(r.status_code for r in responses) == [201] * 5 + [409] * 13
    await assert_counts_exact(team.list_id)
