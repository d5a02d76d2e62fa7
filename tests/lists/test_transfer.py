"""Transferring a list: the owner hands it to a member, and becomes an editor."""

import asyncio
from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from httpx import AsyncClient

from service.core.clock import utc_now
from service.lists import store
from service.lists.models import Membership, Role, TodoList
from tests.lists.conftest import Shared, add_member, get_list, make_list, stored_state
from tests.utils import UserAccount


async def transfer(client: AsyncClient, shared: Shared, to: str) -> Any:
    return await client.post(
        f"{shared.url}/transfer", json={"user_id": to}, headers=shared.owner.headers
    )


async def owned_lists(user: UserAccount) -> int:
    default = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(user.id)})
    assert default is not None
    count: int = default["owned_lists"]
    return count


async def roles(shared: Shared) -> dict[str, str]:
    """Each live member's stored role."""
    found = (
        await Membership.get_pymongo_collection()
        .find({"list_id": ObjectId(shared.id), "removed_at": None})
        .to_list(None)
    )
    return {str(m["user_id"]): m["role"] for m in found}


async def test_the_owner_hands_the_list_to_a_member(client: AsyncClient, shared: Shared) -> None:
    response = await transfer(client, shared, shared.editor.id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"] == "editor"
    assert body["owner"]["id"] == shared.editor.id
    assert body["version"] == shared.list["version"] + 1
    assert body["member_count"] == 3
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert (await get_list(client, shared.editor, shared.id))["role"] == "owner"
    assert await roles(shared) == {
        shared.owner.id: "editor",
        shared.editor.id: "owner",
        shared.viewer.id: "viewer",
    }
    stored = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(shared.id)})
    assert stored is not None
    assert str(stored["owner_id"]) == shared.editor.id
    # Each user's owned lists counted right: the list moved from one count to the other.
    assert await owned_lists(shared.owner) == 1
    assert await owned_lists(shared.editor) == 2
    # The rights went with it.
    old = await client.patch(shared.url, json={"name": "x"}, headers=shared.owner.headers)
    assert old.status_code == 403
    new = await client.patch(shared.url, json={"name": "x"}, headers=shared.editor.headers)
    assert new.status_code == 200
    left = await client.delete(
        f"{shared.url}/members/{shared.owner.id}", headers=shared.owner.headers
    )
    assert left.status_code == 204


async def test_a_viewer_can_be_made_owner(client: AsyncClient, shared: Shared) -> None:
    response = await transfer(client, shared, shared.viewer.id)
    assert response.status_code == 200
    assert (await get_list(client, shared.viewer, shared.id))["role"] == "owner"


async def test_a_default_list_cant_be_transferred(client: AsyncClient, shared: Shared) -> None:
    await add_member(shared.owner.id, shared.editor, Role.EDITOR)
    before = await stored_state()
    response = await client.post(
        f"/api/lists/{shared.owner.id}/transfer",
        json={"user_id": shared.editor.id},
        headers=shared.owner.headers,
    )
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "A default list can't be transferred"},
    )
    assert await stored_state() == before


@pytest.mark.parametrize("who", ["stranger", "nobody"])
async def test_a_transfer_to_someone_who_isnt_a_member_is_404(
    client: AsyncClient, shared: Shared, who: str
) -> None:
    target = shared.stranger.id if who == "stranger" else str(ObjectId())
    before = await stored_state()
    response = await transfer(client, shared, target)
    assert (response.status_code, response.json()) == (404, {"detail": "Member not found"})
    assert await stored_state() == before


async def test_a_transfer_to_yourself_is_409(client: AsyncClient, shared: Shared) -> None:
    before = await stored_state()
    response = await transfer(client, shared, shared.owner.id)
    assert (response.status_code, response.json()) == (409, {"detail": "You already own this list"})
    assert await stored_state() == before


@pytest.mark.parametrize("settings_overrides", [{"max_lists_per_user": 2}])
async def test_a_member_who_owns_the_most_lists_cant_be_given_one(
    client: AsyncClient, shared: Shared
) -> None:
    await make_list(client, shared.editor)  # with their default list: 2, the most
    before = await stored_state()
    response = await transfer(client, shared, shared.editor.id)
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "That member already owns 2 lists, the most anyone may own"},
    )
    assert await stored_state() == before


@pytest.mark.mock_only
@pytest.mark.parametrize("body", [{}, {"user_id": "x"}, {"user_id": 5}, {"user_id": None}])
async def test_a_transfer_names_a_user_id(
    client: AsyncClient, shared: Shared, body: dict[str, Any]
) -> None:
    response = await client.post(f"{shared.url}/transfer", json=body, headers=shared.owner.headers)
    assert response.status_code == 422


async def test_two_transfers_at_once_make_one_owner(client: AsyncClient, shared: Shared) -> None:
    to_editor, to_viewer = await asyncio.gather(
        transfer(client, shared, shared.editor.id), transfer(client, shared, shared.viewer.id)
    )
    assert sorted([to_editor.status_code, to_viewer.status_code]) == [200, 403]
    winner, loser = (
        (shared.editor, shared.viewer)
        if to_editor.status_code == 200
        else (shared.viewer, shared.editor)
    )
    stored_roles = await roles(shared)
    assert [user for user, role in stored_roles.items() if role == "owner"] == [winner.id]
    assert stored_roles[shared.owner.id] == "editor"
    assert stored_roles[loser.id] in {"editor", "viewer"}
    stored = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(shared.id)})
    assert stored is not None
    assert str(stored["owner_id"]) == winner.id
    assert await owned_lists(shared.owner) == 1
    assert await owned_lists(winner) == 2
    assert await owned_lists(loser) == 1


async def test_a_member_who_leaves_during_a_transfer_gets_no_list(
    client: AsyncClient, shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The member passed the check, then left before they were made owner.
    check = store.get_membership

    async def check_then_leave(**kwargs: Any) -> Any:
        found = await check(**kwargs)
        left = await store.end_membership(
            list_id=PydanticObjectId(shared.id),
            user_id=PydanticObjectId(shared.editor.id),
            now=utc_now(),
        )
        assert left
        return found

    monkeypatch.setattr(store, "get_membership", check_then_leave)
    response = await transfer(client, shared, shared.editor.id)
    assert (response.status_code, response.json()) == (404, {"detail": "Member not found"})
    stored = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(shared.id)})
    assert stored is not None
    assert str(stored["owner_id"]) == shared.owner.id
    assert (await roles(shared))[shared.owner.id] == "owner"
    assert await owned_lists(shared.owner) == 2
    assert await owned_lists(shared.editor) == 1


async def test_the_members_show_one_owner_at_every_step_of_a_transfer(
    client: AsyncClient, shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A transfer writes the list's owner, then the new owner's role, then the old owner's:
    # the members read between any two of these writes show one owner, the list's.
    seen: list[list[tuple[str, str]]] = []

    async def members() -> None:
        response = await client.get(f"{shared.url}/members", headers=shared.viewer.headers)
        assert response.status_code == 200, response.text
        seen.append([(m["user"]["id"], m["role"]) for m in response.json()])

    set_owner, set_role = store.set_owner, store.set_role

    async def set_owner_then_read(**kwargs: Any) -> bool:
        changed = await set_owner(**kwargs)
        await members()
        return changed

    async def set_role_then_read(**kwargs: Any) -> bool:
        changed = await set_role(**kwargs)
        await members()
        return changed

    monkeypatch.setattr(store, "set_owner", set_owner_then_read)
    monkeypatch.setattr(store, "set_role", set_role_then_read)
    response = await transfer(client, shared, shared.viewer.id)
    assert response.status_code == 200, response.text
    new_order = [
        (shared.viewer.id, "owner"),
        (shared.owner.id, "editor"),
        (shared.editor.id, "editor"),
    ]
    assert seen == [new_order] * 3


async def test_a_transfer_that_meets_another_one_being_undone_is_409_not_412(
    client: AsyncClient, shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The list was another member's for an instant (their transfer undone: they left
    # meanwhile) as this transfer's conditional write ran: no If-Match was sent, so no 412.
    async def list_elsewhere_for_an_instant(**kwargs: Any) -> bool:
        return False

    monkeypatch.setattr(store, "set_owner", list_elsewhere_for_an_instant)
    response = await transfer(client, shared, shared.editor.id)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "The list changed hands while this request ran: read it again and retry"
    }
    assert await owned_lists(shared.editor) == 1  # the slot taken for it given back
