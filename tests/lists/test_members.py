"""Members: who they are, their roles, removing them, and leaving."""

from typing import Any

import pytest
from bson import ObjectId
from httpx import AsyncClient

from service.lists.models import Membership, Role
from tests.lists.conftest import Shared, add_member, get_list, stored_state


async def members(client: AsyncClient, shared: Shared) -> list[dict[str, Any]]:
    response = await client.get(f"{shared.url}/members", headers=shared.viewer.headers)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def test_members_are_listed_owner_first_then_by_joining(
    client: AsyncClient, shared: Shared
) -> None:
    listed = await members(client, shared)
    assert [(m["user"]["id"], m["role"]) for m in listed] == [
        (shared.owner.id, "owner"),
        (shared.editor.id, "editor"),
        (shared.viewer.id, "viewer"),
    ]
    assert listed[0]["user"] == {
        "id": shared.owner.id,
        "email": shared.owner.email,
        "fname": "Ada",
        "lname": "Lovelace",
    }
    assert set(listed[0]) == {"user", "role", "added_at"}
    # After a transfer the new owner comes first, though they joined later.
    await client.post(
        f"{shared.url}/transfer", json={"user_id": shared.viewer.id}, headers=shared.owner.headers
    )
    assert [m["user"]["id"] for m in await members(client, shared)] == [
        shared.viewer.id,
        shared.owner.id,
        shared.editor.id,
    ]


# ---- roles ----


async def test_the_owner_changes_a_members_role(client: AsyncClient, shared: Shared) -> None:
    response = await client.patch(
        f"{shared.url}/members/{shared.viewer.id}",
        json={"role": "editor"},
        headers=shared.owner.headers,
    )
    assert response.status_code == 200, response.text
    member = response.json()
    assert member["user"]["id"] == shared.viewer.id
    assert member["role"] == "editor"
    # The member's `List` shows their role: it changed, so did the list's version.
    seen = await get_list(client, shared.viewer, shared.id)
    assert seen["role"] == "editor"
    assert seen["version"] == shared.list["version"] + 1
    demoted = await client.patch(
        f"{shared.url}/members/{shared.viewer.id}",
        json={"role": "viewer"},
        headers=shared.owner.headers,
    )
    assert demoted.json()["role"] == "viewer"
    assert (await get_list(client, shared.viewer, shared.id))["role"] == "viewer"


async def test_giving_the_same_role_again_changes_nothing(
    client: AsyncClient, shared: Shared
) -> None:
    before = await stored_state()
    response = await client.patch(
        f"{shared.url}/members/{shared.editor.id}",
        json={"role": "editor"},
        headers=shared.owner.headers,
    )
    assert response.status_code == 200
    assert response.json()["role"] == "editor"
    assert await stored_state() == before


async def test_the_owners_own_role_is_409(client: AsyncClient, shared: Shared) -> None:
    before = await stored_state()
    response = await client.patch(
        f"{shared.url}/members/{shared.owner.id}",
        json={"role": "viewer"},
        headers=shared.owner.headers,
    )
    assert response.status_code == 409
    assert response.json() == {
        "detail": "The owner's role can't be changed; transfer the list to make another owner"
    }
    assert await stored_state() == before


@pytest.mark.parametrize("who", ["stranger", "nobody"])
async def test_a_role_for_someone_who_isnt_a_member_is_404(
    client: AsyncClient, shared: Shared, who: str
) -> None:
    user_id = shared.stranger.id if who == "stranger" else str(ObjectId())
    before = await stored_state()
    response = await client.patch(
        f"{shared.url}/members/{user_id}", json={"role": "editor"}, headers=shared.owner.headers
    )
    assert (response.status_code, response.json()) == (404, {"detail": "Member not found"})
    assert await stored_state() == before


@pytest.mark.mock_only
@pytest.mark.parametrize(
    "body", [{}, {"role": "owner"}, {"role": "EDITOR"}, {"role": "editor", "x": 1}]
)
async def test_a_role_is_editor_or_viewer(
    client: AsyncClient, shared: Shared, body: dict[str, Any]
) -> None:
    response = await client.patch(
        f"{shared.url}/members/{shared.viewer.id}", json=body, headers=shared.owner.headers
    )
    assert response.status_code == 422


@pytest.mark.mock_only
async def test_a_malformed_user_id_is_422(client: AsyncClient, shared: Shared) -> None:
    for method in ("PATCH", "DELETE"):
        response = await client.request(
            method,
            f"{shared.url}/members/nope",
            json={"role": "editor"},
            headers=shared.owner.headers,
        )
        assert response.status_code == 422


# ---- removing and leaving ----


async def live_membership(shared: Shared, user_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await Membership.get_pymongo_collection().find_one(
        {"list_id": ObjectId(shared.id), "user_id": ObjectId(user_id), "removed_at": None}
    )
    return found


async def test_the_owner_removes_a_member(client: AsyncClient, shared: Shared) -> None:
    response = await client.delete(
        f"{shared.url}/members/{shared.editor.id}", headers=shared.owner.headers
    )
    assert response.status_code == 204
    assert await live_membership(shared, shared.editor.id) is None
    after = await get_list(client, shared.owner, shared.id)
    assert after["member_count"] == 2
    assert after["version"] == shared.list["version"] + 1
    assert [m["user"]["id"] for m in await members(client, shared)] == [
        shared.owner.id,
        shared.viewer.id,
    ]
    assert (await client.get(shared.url, headers=shared.editor.headers)).status_code == 404
    again = await client.delete(
        f"{shared.url}/members/{shared.editor.id}", headers=shared.owner.headers
    )
    assert (again.status_code, again.json()) == (404, {"detail": "Member not found"})


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_a_member_leaves(client: AsyncClient, shared: Shared, role: str) -> None:
    leaver = shared.of(role)
    response = await client.delete(f"{shared.url}/members/{leaver.id}", headers=leaver.headers)
    assert response.status_code == 204
    assert await live_membership(shared, leaver.id) is None
    assert (await get_list(client, shared.owner, shared.id))["member_count"] == 2
    assert (await client.get(shared.url, headers=leaver.headers)).status_code == 404


async def test_the_owner_cant_leave(client: AsyncClient, shared: Shared) -> None:
    before = await stored_state()
    response = await client.delete(
        f"{shared.url}/members/{shared.owner.id}", headers=shared.owner.headers
    )
    assert response.status_code == 409
    assert response.json() == {
        "detail": "The owner can't leave the list: transfer it or delete it first"
    }
    assert await stored_state() == before


async def test_nobody_leaves_their_default_list(client: AsyncClient, shared: Shared) -> None:
    owner = shared.owner
    response = await client.delete(
        f"/api/lists/{owner.id}/members/{owner.id}", headers=owner.headers
    )
    assert response.status_code == 409


async def test_removing_someone_who_isnt_a_member_is_404(
    client: AsyncClient, shared: Shared
) -> None:
    before = await stored_state()
    response = await client.delete(
        f"{shared.url}/members/{shared.stranger.id}", headers=shared.owner.headers
    )
    assert (response.status_code, response.json()) == (404, {"detail": "Member not found"})
    assert await stored_state() == before


async def test_a_removed_member_can_be_added_again(client: AsyncClient, shared: Shared) -> None:
    await client.delete(f"{shared.url}/members/{shared.viewer.id}", headers=shared.owner.headers)
    await add_member(shared.id, shared.viewer, Role.EDITOR)
    seen = await get_list(client, shared.viewer, shared.id)
    assert seen["role"] == "editor"
    assert seen["member_count"] == 3
    # One membership document per member and list, brought back.
    count = await Membership.get_pymongo_collection().count_documents(
        {"list_id": ObjectId(shared.id), "user_id": ObjectId(shared.viewer.id)}
    )
    assert count == 1
