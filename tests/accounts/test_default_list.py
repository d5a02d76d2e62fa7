"""Signup makes the user's default list: exactly one, whatever runs in parallel or again."""

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.accounts import store as account_store
from service.lists import service as lists
from service.lists.models import DEFAULT_LIST_NAME, Membership, TodoList
from tests.utils import DEFAULT_PASSWORD, FakeClock, new_email, sign_up


def signup_body(email: str) -> dict[str, Any]:
    return {"email": email, "fname": "Grace", "lname": "Hopper", "password": DEFAULT_PASSWORD}


async def stored_lists(owner: str) -> list[TodoList]:
    return await TodoList.find({"owner_id": PydanticObjectId(owner)}).to_list()


async def stored_memberships(user: str) -> list[Membership]:
    return await Membership.find({"user_id": PydanticObjectId(user)}).to_list()


async def test_signup_makes_one_default_list_named_inbox(
    client: AsyncClient, clock: FakeClock
) -> None:
    user = await sign_up(client)
    (default,) = await stored_lists(user["id"])
    # The default list's id is the user's.
    assert str(default.id) == user["id"]
    assert (default.name, default.is_default, default.deleted_at) == (DEFAULT_LIST_NAME, True, None)
    assert (default.member_count, default.todo_count, default.owned_lists) == (1, 0, 1)
    # From the app's clock (the database keeps milliseconds).
    assert abs(default.created_at - clock.now) < timedelta(milliseconds=1)
    (owner,) = await stored_memberships(user["id"])
    assert (str(owner.list_id), owner.role, owner.removed_at) == (user["id"], "owner", None)


async def test_the_user_and_the_list_have_the_same_creation_time(client: AsyncClient) -> None:
    user = await sign_up(client)
    (default,) = await stored_lists(user["id"])
    stored = await account_store.get_user_by_email(email=user["email"])
    assert stored is not None
    assert default.created_at == stored.created_at


async def test_signup_with_a_taken_email_makes_no_list(client: AsyncClient) -> None:
    email = new_email()
    await sign_up(client, email=email)
    response = await client.post("/api/users", json=signup_body(email))
    assert response.status_code == 409
    # The list made before the user was refused went again.
    assert await TodoList.count() == 1
    assert await Membership.count() == 1


async def test_parallel_signups_of_one_email_make_one_user_and_one_list(
    client: AsyncClient,
) -> None:
    email = new_email()
    responses = await asyncio.gather(
        *(client.post("/api/users", json=signup_body(email)) for _ in range(4))
    )
    assert Counter(response.status_code for response in responses) == {201: 1, 409: 3}
    (created,) = [response.json() for response in responses if response.status_code == 201]
    lists_stored = await TodoList.find().to_list()
    assert [str(stored.id) for stored in lists_stored] == [created["id"]]
    assert await Membership.count() == 1


async def test_parallel_signups_of_different_emails_make_a_list_each(
    client: AsyncClient,
) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/users", json=signup_body(new_email())) for _ in range(3))
    )
    assert [response.status_code for response in responses] == [201] * 3
    for response in responses:
        assert len(await stored_lists(response.json()["id"])) == 1


@pytest.mark.parametrize("runs", [2, 5])
async def test_making_a_default_list_again_or_at_once_makes_one(
    client: AsyncClient, clock: FakeClock, runs: int
) -> None:
    user = await sign_up(client)
    user_id = PydanticObjectId(user["id"])
    await asyncio.gather(
        *(lists.create_default_list(user_id=user_id, now=clock.now) for _ in range(runs))
    )
    await lists.create_default_list(user_id=user_id, todo_count=5, now=clock.now)
    (default,) = await stored_lists(user["id"])
    assert default.todo_count == 0  # the first one stays as it was
    assert len(await stored_memberships(user["id"])) == 1
