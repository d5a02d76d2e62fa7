"""Helpers of the invitation tests: invite, answer, and a list with a member of each role.

Lists are made without the lists API (written alongside): a user's default list (its id is
the user's) or lists/store.create_list.
"""

from dataclasses import dataclass
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient, Response

from service.core.clock import utc_now
from service.lists import store as lists_store
from tests.utils import UserAccount, create_account, new_email

NOT_AN_INVITATION = "A" * 32  # the shape of an id, of no invitation


async def invite(
    client: AsyncClient, owner: UserAccount, list_id: str, email: str, role: str = "viewer"
) -> Response:
    """POST /api/lists/{list_id}/invitations as `owner`."""
    return await client.post(
        f"/api/lists/{list_id}/invitations",
        json={"email": email, "role": role},
        headers=owner.headers,
    )


async def invited(
    client: AsyncClient, owner: UserAccount, list_id: str, email: str, role: str = "viewer"
) -> dict[str, Any]:
    """Invite, expecting 202; the invitation."""
    response = await invite(client, owner, list_id, email, role)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def answer(
    client: AsyncClient, user: UserAccount, invitation_id: str, how: str = "accept"
) -> Response:
    """POST /api/invitations/{id}/accept (or decline) as `user`."""
    return await client.post(f"/api/invitations/{invitation_id}/{how}", headers=user.headers)


async def join(
    client: AsyncClient, owner: UserAccount, list_id: str, user: UserAccount, role: str
) -> None:
    """Make `user` a member of the list with `role`, by invitation."""
    invitation = await invited(client, owner, list_id, user.email, role)
    response = await answer(client, user, invitation["id"])
    assert response.status_code == 200, response.text


async def pending(client: AsyncClient, owner: UserAccount, list_id: str) -> list[dict[str, Any]]:
    """The list's pending invitations, as its owner sees them."""
    response = await client.get(f"/api/lists/{list_id}/invitations", headers=owner.headers)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def inbox(client: AsyncClient, user: UserAccount) -> list[dict[str, Any]]:
    """GET /api/invitations as `user`."""
    response = await client.get("/api/invitations", headers=user.headers)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def make_list(owner: UserAccount, name: str = "Groceries") -> str:
    """A new (not default) list of `owner`; its id."""
    stored = await lists_store.create_list(
        owner_id=PydanticObjectId(owner.id), name=name, max_lists=100, now=utc_now()
    )
    return str(stored["_id"])


@dataclass(frozen=True)
class Team:
    """A list with its owner, an editor and a viewer, and a stranger to it."""

    list_id: str
    owner: UserAccount
    editor: UserAccount
    viewer: UserAccount
    stranger: UserAccount


@pytest.fixture
async def team(client: AsyncClient, alice: UserAccount) -> Team:
    """Alice's default list, shared with an editor and a viewer."""
    editor, viewer, stranger = [await create_account(client) for _ in range(3)]
    team = Team(alice.id, alice, editor, viewer, stranger)
    await join(client, alice, team.list_id, team.editor, "editor")
    await join(client, alice, team.list_id, team.viewer, "viewer")
    return team


@pytest.fixture
def outsider_email() -> str:
    """An email no account has."""
    return new_email()
