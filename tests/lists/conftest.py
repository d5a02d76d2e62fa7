"""Lists tests: a list shared with an editor and a viewer, and a stranger to it.

Members are added with lists.store.add_member (what accepting an invitation calls), so that
these tests don't depend on the invitation routes.
"""

from dataclasses import dataclass
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.config import Settings
from service.core.clock import utc_now
from service.lists import store
from service.lists.models import Membership, Role, TodoList
from tests.utils import UserAccount, create_account


async def make_list(
    client: AsyncClient, user: UserAccount, name: str = "Groceries"
) -> dict[str, Any]:
    """Create a list through the API and return the 201 body."""
    response = await client.post("/api/lists", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def add_member(list_id: str, user: UserAccount, role: Role, *, max_members: int = 50) -> None:
    """Make `user` a member of the list with `role`, as an accepted invitation does."""
    added = await store.add_member(
        list_id=PydanticObjectId(list_id),
        user_id=PydanticObjectId(user.id),
        role=role,
        max_members=max_members,
        now=utc_now(),
    )
    assert added


async def stored_state() -> list[list[dict[str, Any]]]:
    """Every list and membership as stored, to check that a refused call changed nothing."""
    return [
        await collection.find({}, sort=[("_id", 1)]).to_list(None)
        for collection in (TodoList.get_pymongo_collection(), Membership.get_pymongo_collection())
    ]


async def get_list(client: AsyncClient, user: UserAccount, list_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/lists/{list_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass(frozen=True)
class Shared:
    """A list with its owner, an editor, a viewer, and someone who isn't a member."""

    list: dict[str, Any]
    owner: UserAccount
    editor: UserAccount
    viewer: UserAccount
    stranger: UserAccount

    @property
    def id(self) -> str:
        return str(self.list["id"])

    @property
    def url(self) -> str:
        return f"/api/lists/{self.id}"

    def of(self, who: str) -> UserAccount:
        user: UserAccount = getattr(self, who)
        return user


@pytest.fixture
async def shared(client: AsyncClient, settings: Settings) -> Shared:
    owner, editor, viewer, stranger = [await create_account(client) for _ in range(4)]
    created = await make_list(client, owner, "Shared")
    await add_member(created["id"], editor, Role.EDITOR)
    await add_member(created["id"], viewer, Role.VIEWER)
    return Shared(await get_list(client, owner, created["id"]), owner, editor, viewer, stranger)
