"""Lists: create, read (ETag, 304), rename (If-Match, 412), delete; the default list; paging."""

from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from httpx import AsyncClient

from service.core.clock import utc_now
from service.core.pagination import encode_cursor, fingerprint
from service.lists import store
from service.lists.models import Membership, Role, TodoList
from service.todos.models import Todo
from tests.lists.conftest import Shared, add_member, get_list, make_list, stored_state
from tests.utils import UserAccount, create_account

LIST_FIELDS = {
    "id",
    "name",
    "is_default",
    "role",
    "owner",
    "member_count",
    "created_at",
    "updated_at",
    "version",
}


async def my_lists(client: AsyncClient, user: UserAccount, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/lists", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---- create ----


async def test_creating_a_list_answers_201_with_location_and_etag(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await client.post(
        "/api/lists", json={"name": "  Groceries \n"}, headers=alice.headers
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == LIST_FIELDS
    assert created["name"] == "Groceries"
    assert created["is_default"] is False
    assert created["role"] == "owner"
    assert created["owner"] == {"id": alice.id, "fname": "Ada", "lname": "Lovelace"}
    assert created["member_count"] == 1
    assert created["version"] == 1
    assert created["created_at"] == created["updated_at"]
    assert response.headers["Location"] == f"/api/lists/{created['id']}"
    assert response.headers["ETag"] == '"1"'
    assert await get_list(client, alice, created["id"]) == created


@pytest.mark.mock_only
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": " \t\n"},
        {"name": "x" * 101},
        {"name": 5},
        {"name": None},
        {"name": "ok", "owner_id": "6b0f2329682a2707ca9cdb21"},
        {"name": "ok", "is_default": True},
    ],
)
async def test_a_list_needs_a_name_of_1_to_100_characters_and_nothing_else(
    client: AsyncClient, alice: UserAccount, body: dict[str, Any]
) -> None:
    response = await client.post("/api/lists", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text


async def test_a_name_of_100_characters_is_fine(client: AsyncClient, alice: UserAccount) -> None:
    assert (await make_list(client, alice, "x" * 100))["name"] == "x" * 100


@pytest.mark.mock_only
async def test_lists_need_a_token(client: AsyncClient) -> None:
    for method, path in [("GET", "/api/lists"), ("POST", "/api/lists")]:
        response = await client.request(method, path, json={"name": "x"})
        assert response.status_code == 401


# ---- read ----


async def test_reading_a_list_gives_its_etag_and_304_when_it_matches(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = await make_list(client, alice)
    url = f"/api/lists/{created['id']}"
    response = await client.get(url, headers=alice.headers)
    assert response.headers["ETag"] == '"1"'
    same = await client.get(url, headers={**alice.headers, "If-None-Match": '"1"'})
    assert same.status_code == 304
    assert same.headers["ETag"] == '"1"'
    assert same.content == b""
    stale = await client.get(url, headers={**alice.headers, "If-None-Match": '"7", W/"9"'})
    assert stale.status_code == 200
    assert stale.json() == created


@pytest.mark.mock_only
async def test_a_malformed_condition_or_id_is_refused(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = await make_list(client, alice)
    url = f"/api/lists/{created['id']}"
    bad = await client.get(url, headers={**alice.headers, "If-None-Match": "1"})
    assert bad.status_code == 400
    bad = await client.patch(url, json={"name": "x"}, headers={**alice.headers, "If-Match": "nope"})
    assert bad.status_code == 400
    assert (await client.get("/api/lists/not-an-id", headers=alice.headers)).status_code == 422


# ---- rename ----


async def test_renaming_a_list_bumps_its_version(client: AsyncClient, alice: UserAccount) -> None:
    created = await make_list(client, alice)
    response = await client.patch(
        f"/api/lists/{created['id']}", json={"name": " Shopping "}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    renamed = response.json()
    assert renamed["name"] == "Shopping"
    assert renamed["version"] == 2
    assert (
        renamed["updated_at"] > created["updated_at"]
        or renamed["updated_at"] == (created["updated_at"])
    )
    assert response.headers["ETag"] == '"2"'
    assert await get_list(client, alice, created["id"]) == renamed


async def test_a_rename_with_a_stale_if_match_is_412_and_changes_nothing(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = await make_list(client, alice)
    url = f"/api/lists/{created['id']}"
    fresh = await client.patch(
        url, json={"name": "First"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert fresh.status_code == 200
    before = await stored_state()
    stale = await client.patch(
        url, json={"name": "Second"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.json() == {
        "detail": "The list has changed since that ETag: read it again and retry"
    }
    assert await stored_state() == before
    assert (await get_list(client, alice, created["id"]))["name"] == "First"


@pytest.mark.mock_only
async def test_a_rename_needs_a_name(client: AsyncClient, alice: UserAccount) -> None:
    created = await make_list(client, alice)
    for body in [{}, {"name": ""}, {"name": "x", "color": "red"}]:
        response = await client.patch(
            f"/api/lists/{created['id']}", json=body, headers=alice.headers
        )
        assert response.status_code == 422, body


# ---- the default list ----


async def test_every_user_has_a_default_list_named_inbox(
    client: AsyncClient, alice: UserAccount
) -> None:
    page = await my_lists(client, alice)
    [inbox] = page["items"]
    assert inbox["id"] == alice.id
    assert inbox["name"] == "Inbox"
    assert inbox["is_default"] is True
    assert inbox["role"] == "owner"
    assert page["next_cursor"] is None


async def test_the_default_list_can_be_renamed_but_not_deleted(
    client: AsyncClient, alice: UserAccount
) -> None:
    url = f"/api/lists/{alice.id}"
    renamed = await client.patch(url, json={"name": "Mine"}, headers=alice.headers)
    assert renamed.status_code == 200
    assert renamed.json()["is_default"] is True
    before = await stored_state()
    refused = await client.delete(url, headers=alice.headers)
    assert refused.status_code == 409
    assert refused.json() == {"detail": "Your default list can't be deleted"}
    assert await stored_state() == before


async def test_a_shared_default_list_is_default_only_for_its_owner(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    await add_member(alice.id, bob, Role.EDITOR)
    seen = await get_list(client, bob, alice.id)
    assert seen["is_default"] is False
    assert seen["role"] == "editor"
    assert seen["owner"]["id"] == alice.id
    assert (await get_list(client, alice, alice.id))["is_default"] is True


# ---- delete ----


async def test_deleting_a_list_removes_it_for_every_member(
    client: AsyncClient, shared: Shared
) -> None:
    response = await client.delete(shared.url, headers=shared.owner.headers)
    assert response.status_code == 204
    assert response.content == b""
    for member in (shared.owner, shared.editor, shared.viewer):
        assert (await client.get(shared.url, headers=member.headers)).status_code == 404
        ids = [item["id"] for item in (await my_lists(client, member))["items"]]
        assert shared.id not in ids
    stored = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(shared.id)})
    assert stored is not None
    assert stored["deleted_at"] is not None
    assert stored["version"] == shared.list["version"] + 1
    memberships = (
        await Membership.get_pymongo_collection()
        .find({"list_id": ObjectId(shared.id)})
        .to_list(None)
    )
    assert len(memberships) == 3
    assert all(m["removed_at"] is not None for m in memberships)
    again = await client.delete(shared.url, headers=shared.owner.headers)
    assert (again.status_code, again.json()) == (404, {"detail": "List not found"})


async def test_deleting_a_list_deletes_its_todos_as_tombstones(
    client: AsyncClient, alice: UserAccount
) -> None:
    doomed = await make_list(client, alice, "Doomed")
    kept = await make_list(client, alice, "Kept")
    todos = Todo.get_pymongo_collection()
    for list_id in (doomed["id"], kept["id"]):
        await todos.insert_one(
            {"list_id": ObjectId(list_id), "text": "t", "version": 1, "deleted_at": None}
        )
    response = await client.delete(f"/api/lists/{doomed['id']}", headers=alice.headers)
    assert response.status_code == 204
    gone = await todos.find_one({"list_id": ObjectId(doomed["id"])})
    assert gone is not None
    assert gone["deleted_at"] is not None
    assert gone["version"] == 2
    assert "text" not in gone
    still = await todos.find_one({"list_id": ObjectId(kept["id"])})
    assert still is not None
    assert still["deleted_at"] is None


async def test_a_delete_with_a_stale_if_match_is_412_and_changes_nothing(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = await make_list(client, alice)
    url = f"/api/lists/{created['id']}"
    await client.patch(url, json={"name": "Changed"}, headers=alice.headers)
    before = await stored_state()
    stale = await client.delete(url, headers={**alice.headers, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert await stored_state() == before
    fresh = await client.delete(url, headers={**alice.headers, "If-Match": '"2"'})
    assert fresh.status_code == 204


async def test_an_interrupted_delete_is_finished_by_a_retry(
    client: AsyncClient, shared: Shared
) -> None:
    # The request stopped after the tombstone: the memberships are still live.
    list_id = PydanticObjectId(shared.id)
    owner_id = PydanticObjectId(shared.owner.id)
    assert await store.tombstone_list(
        list_id=list_id, owner_id=owner_id, versions=None, now=utc_now()
    )
    slots_before = await owned_lists(shared.owner)
    assert (await client.get(shared.url, headers=shared.editor.headers)).status_code == 404
    retried = await client.delete(shared.url, headers=shared.owner.headers)
    assert retried.status_code == 204
    live = await Membership.get_pymongo_collection().count_documents(
        {"list_id": list_id, "removed_at": None}
    )
    assert live == 0
    assert await owned_lists(shared.owner) == slots_before - 1
    # Once finished, it is a list like any deleted one, and the slot came back only once.
    again = await client.delete(shared.url, headers=shared.owner.headers)
    assert again.status_code == 404
    assert await owned_lists(shared.owner) == slots_before - 1


async def owned_lists(user: UserAccount) -> int:
    default = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(user.id)})
    assert default is not None
    count: int = default["owned_lists"]
    return count


async def test_deleting_a_list_gives_its_slot_back(client: AsyncClient, alice: UserAccount) -> None:
    assert await owned_lists(alice) == 1
    created = await make_list(client, alice)
    assert await owned_lists(alice) == 2
    await client.delete(f"/api/lists/{created['id']}", headers=alice.headers)
    assert await owned_lists(alice) == 1


# ---- listing and paging ----


async def test_my_default_list_comes_first_then_lists_by_creation(
    client: AsyncClient, alice: UserAccount
) -> None:
    bob = await create_account(client)  # signed up after alice: his default list is newer
    bobs_old = await make_list(client, bob, "Bob's")
    mine = [await make_list(client, alice, f"Mine {n}") for n in range(3)]
    bobs_new = await make_list(client, bob, "Bob's newer")
    await add_member(bobs_new["id"], alice, Role.VIEWER)
    await add_member(bobs_old["id"], alice, Role.EDITOR)
    await add_member(bob.id, alice, Role.VIEWER)
    names = [item["name"] for item in (await my_lists(client, alice))["items"]]
    assert names == ["Inbox", "Inbox", "Bob's", "Mine 0", "Mine 1", "Mine 2", "Bob's newer"]
    items = (await my_lists(client, alice))["items"]
    assert [item["id"] for item in items[:2]] == [alice.id, bob.id]
    assert [item["role"] for item in items] == [
        "owner",
        "viewer",
        "editor",
        "owner",
        "owner",
        "owner",
        "viewer",
    ]
    assert [item["id"] for item in items[3:6]] == [m["id"] for m in mine]


async def test_lists_come_a_page_at_a_time(client: AsyncClient, alice: UserAccount) -> None:
    created = [await make_list(client, alice, f"L{n}") for n in range(6)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await my_lists(client, alice, **params)
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A list created while paging comes in its place (the end), none repeats.
        if pages == 1:
            created.append(await make_list(client, alice, "late"))
    assert seen == [alice.id] + [c["id"] for c in created]
    assert pages == 3


async def test_a_page_of_exactly_the_rest_has_no_next_cursor(
    client: AsyncClient, alice: UserAccount
) -> None:
    await make_list(client, alice)
    page = await my_lists(client, alice, limit=2)
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


async def test_a_cursor_of_another_user_or_made_up_is_400(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    for user in (alice, bob):
        await make_list(client, user)
    cursor = (await my_lists(client, alice, limit=1))["next_cursor"]
    assert cursor
    other = await client.get("/api/lists", params={"cursor": cursor}, headers=bob.headers)
    assert other.status_code == 400
    assert other.json() == {"detail": "This cursor belongs to another query"}
    for bad in ["x", "eyJrIjpbMV0sImYiOiIxIn0", "%%%"]:
        response = await client.get("/api/lists", params={"cursor": bad}, headers=alice.headers)
        assert response.status_code == 400, bad


@pytest.mark.parametrize(
    "key",
    [
        [],
        [0, "2026-01-01T00:00:00+00:00"],
        [2, "2026-01-01T00:00:00+00:00", "6b0f2329682a2707ca9cdb21"],
        [True, "2026-01-01T00:00:00+00:00", "6b0f2329682a2707ca9cdb21"],
        [1, "2026-01-01T00:00:00", "6b0f2329682a2707ca9cdb21"],
        [1, "yesterday", "6b0f2329682a2707ca9cdb21"],
        [1, 5, "6b0f2329682a2707ca9cdb21"],
        [1, "2026-01-01T00:00:00+00:00", "not an id"],
        [1, "2026-01-01T00:00:00+00:00", 5],
    ],
)
async def test_a_cursor_with_a_key_this_listing_never_makes_is_400(
    client: AsyncClient, alice: UserAccount, key: list[Any]
) -> None:
    cursor = encode_cursor(key, fingerprint({"lists_of": alice.id}))
    response = await client.get("/api/lists", params={"cursor": cursor}, headers=alice.headers)
    assert (response.status_code, response.json()) == (400, {"detail": "Invalid cursor"})


@pytest.mark.mock_only
@pytest.mark.parametrize("limit", ["0", "101", "x"])
async def test_limit_is_1_to_100(client: AsyncClient, alice: UserAccount, limit: str) -> None:
    response = await client.get("/api/lists", params={"limit": limit}, headers=alice.headers)
    assert response.status_code == 422
