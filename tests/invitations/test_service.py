"""What account and list deletion call: invitations.service.delete_invitations_of(_list)."""

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.invitations import service
from tests.invitations.conftest import inbox, invite, invited, make_list, pending
from tests.utils import UserAccount, create_account


@pytest.mark.parametrize("settings_overrides", [{"max_pending_invitations": 2}])
async def test_deleting_a_users_invitations_takes_those_sent_and_received(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    carol = await create_account(client)
    to_bob = await invited(client, alice, alice.id, bob.email)
    to_carol = await invited(client, alice, alice.id, carol.email)
    await invited(client, bob, bob.id, alice.email)  # sent by bob
    await invited(client, carol, carol.id, alice.email)  # someone else's: stays
    await service.delete_invitations_of(user_id=PydanticObjectId(bob.id), email=bob.email)
    assert await pending(client, alice, alice.id) == [to_carol]
    assert await pending(client, bob, bob.id) == []
    assert [received["list"]["id"] for received in await inbox(client, alice)] == [carol.id]
    assert to_bob not in await pending(client, alice, alice.id)
    # Bob's slot on alice's list is free again (she has 2 at most).
    await invited(client, alice, alice.id, "next@example.com")


async def test_deleting_a_lists_invitations_leaves_other_lists_alone(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    groceries = await make_list(alice)
    await invited(client, alice, groceries, bob.email)
    kept = await invited(client, alice, alice.id, bob.email)
    await service.delete_invitations_of_list(list_id=PydanticObjectId(groceries))
    assert [received["id"] for received in await inbox(client, bob)] == [kept["id"]]
    assert (await invite(client, alice, groceries, bob.email)).status_code == 202
