"""MAX_LISTS_PER_USER and MAX_LIST_MEMBERS: 409 past them, and exact under parallel requests."""

import asyncio

import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from httpx import AsyncClient

from service.core.clock import utc_now
from service.errors import Conflict
from service.lists import store
from service.lists.models import Membership, Role, TodoList
from tests.lists.conftest import make_list
from tests.utils import UserAccount, create_account


@pytest.mark.parametrize("settings_overrides", [{"max_lists_per_user": 3}])
async def test_the_list_limit_is_409_and_deleting_frees_a_slot(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = [await make_list(client, alice, f"L{n}") for n in range(2)]  # + the default: 3
    response = await client.post("/api/lists", json={"name": "one too many"}, headers=alice.headers)
    assert response.status_code == 409
    assert response.json() == {"detail": "List limit reached: at most 3 lists; delete some first."}
    deleted = await client.delete(f"/api/lists/{created[0]['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    await make_list(client, alice, "fits again")


@pytest.mark.parametrize(
    "settings_overrides", [{"max_lists_per_user": 5, "request_db_budget_ms": 30_000}]
)
async def test_the_list_limit_holds_under_parallel_creates(
    client: AsyncClient, alice: UserAccount
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/api/lists", json={"name": f"L{n}"}, headers=alice.headers)
            for n in range(20)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] * 4 + [409] * 16
    owned = await TodoList.get_pymongo_collection().count_documents(
        {"owner_id": ObjectId(alice.id), "deleted_at": None}
    )
    assert owned == 5
    default = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(alice.id)})
    assert default is not None
    assert default["owned_lists"] == 5


async def add(list_id: str, user_id: str, max_members: int) -> bool:
    return await store.add_member(
        list_id=PydanticObjectId(list_id),
        user_id=PydanticObjectId(user_id),
        role=Role.VIEWER,
        max_members=max_members,
        now=utc_now(),
    )


async def test_no_list_is_made_once_the_account_deletion_has_begun(
    client: AsyncClient, alice: UserAccount
) -> None:
    # A long import still running when its owner deletes the account: the deletion tombstones
    # the lists first, the default list (which counts the owned lists) with them.
    owner = PydanticObjectId(alice.id)
    await store.delete_lists_of(user_id=owner, now=utc_now())
    with pytest.raises(Conflict, match="The account is being deleted"):
        await store.create_list(owner_id=owner, name="late", max_lists=10, now=utc_now())
    assert await TodoList.find({"owner_id": owner, "name": "late"}).count() == 0
    assert not await store.reserve_list_slot(user_id=owner, max_lists=10)


async def test_the_member_limit_holds_under_parallel_adds(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = await make_list(client, alice)
    users = [await create_account(client) for _ in range(8)]
    results = await asyncio.gather(
        *(add(created["id"], user.id, 4) for user in users), return_exceptions=True
    )
    assert sum(r is True for r in results) == 3  # and the owner: 4
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(refused) == 5
    assert refused[0].message == "This list is full: at most 4 members."
    stored = await TodoList.get_pymongo_collection().find_one({"_id": ObjectId(created["id"])})
    assert stored is not None
    assert stored["member_count"] == 4
    live = await Membership.get_pymongo_collection().count_documents(
        {"list_id": ObjectId(created["id"]), "removed_at": None}
    )
    assert live == 4


async def test_the_same_member_added_twice_at_once_is_one_membership(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    created = await make_list(client, alice)
    results = await asyncio.gather(*(add(created["id"], bob.id, 50) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    seen = await client.get(f"/api/lists/{created['id']}", headers=bob.headers)
    assert seen.json()["member_count"] == 2


async def test_leaving_frees_a_member_slot(client: AsyncClient, alice: UserAccount) -> None:
    created = await make_list(client, alice)
    bob, carol = await create_account(client), await create_account(client)
    assert await add(created["id"], bob.id, 2)
    with pytest.raises(Conflict):
        await add(created["id"], carol.id, 2)
    left = await client.delete(f"/api/lists/{created['id']}/members/{bob.id}", headers=bob.headers)
    assert left.status_code == 204
    assert await add(created["id"], carol.id, 2)
