"""A shared list with a member of each role, and a snapshot of what refused calls must leave
as it was."""

from dataclasses import dataclass
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.lists.models import TodoList
from service.todos.models import Todo
from tests.utils import UserAccount, create_account, create_list, share_list

ROLES = ["owner", "editor", "viewer", "stranger"]


@dataclass(frozen=True)
class Team:
    """A list (`list_id`) owned by `owner`, shared with an editor and a viewer; `stranger` is
    a user who isn't a member of it."""

    owner: UserAccount
    editor: UserAccount
    viewer: UserAccount
    stranger: UserAccount
    list_id: str

    def user(self, role: str) -> UserAccount:
        user: UserAccount = getattr(self, role)
        return user


@pytest.fixture
async def team(client: AsyncClient) -> Team:
    owner, editor, viewer, stranger = [await create_account(client) for _ in ROLES]
    shared = await create_list(client, owner, "Team")
    await share_list(client, owner, shared["id"], editor, "editor")
    await share_list(client, owner, shared["id"], viewer, "viewer")
    return Team(owner, editor, viewer, stranger, shared["id"])


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every todo and list as stored, in id order: equal before and after a refused call."""
    return {
        model.Settings.name: await model.get_pymongo_collection()
        .find({}, sort=[("_id", 1)])
        .to_list(None)
        for model in (Todo, TodoList)
    }


async def todo_count(list_id: str) -> int:
    """The list's count of live todos, as MAX_TODOS_PER_LIST checks it."""
    stored = await TodoList.get(PydanticObjectId(list_id))
    assert stored is not None
    return stored.todo_count


async def live_todos(list_id: str) -> int:
    """How many live todos the list really holds."""
    return await Todo.find({"list_id": PydanticObjectId(list_id), "deleted_at": None}).count()


async def assert_counts_exact(*list_ids: str) -> None:
    """Each list's count is the number of live todos it holds."""
    for list_id in list_ids:
        assert await todo_count(list_id) == await live_todos(list_id), list_id


async def leave(client: AsyncClient, list_id: str, user: UserAccount) -> None:
    """`user` leaves the list through the API (their membership becomes a tombstone)."""
    response = await client.delete(f"/api/lists/{list_id}/members/{user.id}", headers=user.headers)
    assert response.status_code == 204, response.text


async def delete_list(client: AsyncClient, owner: UserAccount, list_id: str) -> None:
    """Delete the list through the API (its todos become tombstones: todos'
    delete_todos_in_list)."""
    response = await client.delete(f"/api/lists/{list_id}", headers=owner.headers)
    assert response.status_code == 204, response.text
