"""DELETE /api/me with lists: the lists the account owns go (their members see them removed),
its memberships elsewhere end, its invitations go; an interrupted deletion can be run again."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient, Response
from pymongo.asynchronous.collection import AsyncCollection

from service.accounts import service as account_service
from service.accounts.models import Session, User
from service.core.clock import utc_now
from service.events.models import EventTicket
from service.invitations import service as invitations
from service.invitations.models import Invitation
from service.lists import service as lists
from service.lists import store as list_store
from service.lists.models import Membership, Role, TodoList
from service.todos.models import IdempotencyKey, Todo
from tests.utils import DEFAULT_PASSWORD, UserAccount, create_account, create_todo, log_in

LIST_NOT_FOUND = {"detail": "List not found"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Lists sync complete up to the present: what a test just did is in the answer.
    return {"sync_lag_ms": 0}


async def delete_me(client: AsyncClient, user: UserAccount) -> Response:
    return await client.request(
        "DELETE", "/api/me", json={"password": DEFAULT_PASSWORD}, headers=user.headers
    )


async def make_list(client: AsyncClient, user: UserAccount, name: str) -> str:
    response = await client.post("/api/lists", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    list_id: str = response.json()["id"]
    return list_id


async def add_member(list_id: str, user: UserAccount, role: Role) -> None:
    """Make `user` a member of the list, as an accepted invitation does."""
    added = await list_store.add_member(
        list_id=PydanticObjectId(list_id),
        user_id=PydanticObjectId(user.id),
        role=role,
        max_members=50,
        now=utc_now(),
    )
    assert added


async def invite(client: AsyncClient, owner: UserAccount, list_id: str, email: str) -> None:
    response = await client.post(
        f"/api/lists/{list_id}/invitations",
        json={"email": email, "role": "editor"},
        headers=owner.headers,
    )
    assert response.status_code == 202, response.text


async def lists_sync(client: AsyncClient, user: UserAccount) -> list[dict[str, Any]]:
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    response = await client.get("/api/lists", params={"updated_since": since}, headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def stored_list(list_id: str) -> TodoList:
    found = await TodoList.get(PydanticObjectId(list_id))
    assert found is not None
    return found


async def test_the_members_of_a_deleted_accounts_list_no_longer_read_it(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await make_list(client, alice, "Shared")
    await add_member(shared, bob, Role.EDITOR)
    todo = await create_todo(client, bob, "in the shared list", list_id=shared)
    assert (await client.get(f"/api/lists/{shared}", headers=bob.headers)).status_code == 200

    assert (await delete_me(client, alice)).status_code == 204

    # As for a list that never existed: same status, same body.
    response = await client.get(f"/api/lists/{shared}", headers=bob.headers)
    assert (response.status_code, response.json()) == (404, LIST_NOT_FOUND)
    missing = await client.get(f"/api/lists/{PydanticObjectId()}", headers=bob.headers)
    assert (missing.status_code, missing.json()) == (404, LIST_NOT_FOUND)
    todo_read = await client.get(f"/api/todos/{todo['id']}", headers=bob.headers)
    assert todo_read.status_code == 404
    listed = await client.get("/api/todos", headers=bob.headers)
    assert listed.json()["items"] == []
    # Lists sync tells bob to drop it; his own default list is still there.
    synced = {item["id"]: item for item in await lists_sync(client, bob)}
    assert synced[shared] == {"id": shared, "removed": True}
    assert synced[bob.id].get("removed") is None


async def test_an_account_deletion_tombstones_its_lists_and_their_todos(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await make_list(client, alice, "Shared")
    await add_member(shared, bob, Role.EDITOR)
    in_default = await create_todo(client, alice, "in the inbox")
    in_shared = await create_todo(client, bob, "by bob", list_id=shared)

    assert (await delete_me(client, alice)).status_code == 204

    for list_id in (alice.id, shared):
        stored = await stored_list(list_id)
        assert stored.deleted_at is not None
    # Every membership of them ended (kept as tombstones for lists sync).
    memberships = await Membership.find({"list_id": PydanticObjectId(shared)}).to_list()
    assert {(str(m.user_id), m.removed_at is not None) for m in memberships} == {
        (alice.id, True),
        (bob.id, True),
    }
    # The todos are tombstones (delta sync and the feed report them), in their list.
    for todo, list_id in ((in_default, alice.id), (in_shared, shared)):
        stored_todo = await Todo.get_pymongo_collection().find_one(
            {"_id": PydanticObjectId(todo["id"])}
        )
        assert stored_todo is not None
        assert stored_todo["deleted_at"] is not None
        assert str(stored_todo["list_id"]) == list_id
        assert "text" not in stored_todo


async def test_an_account_deletion_ends_its_memberships_of_other_lists(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    carol = await create_account(client)
    bobs = await make_list(client, bob, "Bob's")
    await add_member(bobs, alice, Role.EDITOR)
    await add_member(bobs, carol, Role.VIEWER)
    by_alice = await create_todo(client, alice, "alice was here", list_id=bobs)
    before = await stored_list(bobs)
    assert before.member_count == 3

    assert (await delete_me(client, alice)).status_code == 204

    after = await stored_list(bobs)
    assert (after.member_count, after.deleted_at) == (2, None)
    assert after.version > before.version  # its members see the change in lists sync
    members = await client.get(f"/api/lists/{bobs}/members", headers=carol.headers)
    assert [member["user"]["id"] for member in members.json()] == [bob.id, carol.id]
    read = await client.get(f"/api/lists/{bobs}", headers=bob.headers)
    assert read.json()["member_count"] == 2
    # The todo alice created belongs to the list: it stays.
    kept = await client.get(f"/api/todos/{by_alice['id']}", headers=bob.headers)
    assert kept.status_code == 200
    assert kept.json()["created_by"] == alice.id
    synced = {item["id"]: item for item in await lists_sync(client, carol)}
    assert synced[bobs]["member_count"] == 2


async def test_an_account_deletion_deletes_the_invitations_it_sent_and_got(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    alices = await make_list(client, alice, "Alice's")
    bobs = await make_list(client, bob, "Bob's")
    await invite(client, alice, alices, "someone@example.com")
    await invite(client, bob, bobs, alice.email)
    await invite(client, bob, bobs, "another@example.com")

    assert (await delete_me(client, alice)).status_code == 204

    remaining = await Invitation.find().to_list()
    assert [(invitation.email, str(invitation.list_id)) for invitation in remaining] == [
        ("another@example.com", bobs)
    ]


async def test_an_interrupted_account_deletion_is_finished_by_deleting_again(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    alices = await make_list(client, alice, "Alice's")
    await add_member(alices, bob, Role.VIEWER)
    bobs = await make_list(client, bob, "Bob's")
    await add_member(bobs, alice, Role.EDITOR)
    await create_todo(client, alice, "in the inbox")

    async def crash(**_: Any) -> int:
        raise RuntimeError("the process died here")

    # Past the account's own lists, before its memberships of others.
    monkeypatch.setattr(lists, "leave_all_lists", crash)
    with pytest.raises(RuntimeError, match="died"):
        await account_service.delete_everything_of(
            user_id=PydanticObjectId(alice.id), email=alice.email, now=utc_now()
        )
    monkeypatch.undo()
    # Logged out, but the account is there: it logs in and deletes itself again.
    assert (await client.get("/api/me", headers=alice.headers)).status_code == 401
    again = UserAccount(alice.id, alice.email, alice.password, await log_in(client, alice.email))
    assert (await delete_me(client, again)).status_code == 204

    assert await User.find({"_id": PydanticObjectId(alice.id)}).count() == 0
    assert (await stored_list(alices)).deleted_at is not None
    assert (await stored_list(bobs)).member_count == 1
    live = Membership.find({"user_id": PydanticObjectId(alice.id), "removed_at": None})
    assert await live.count() == 0
    assert await Todo.find({"list_id": PydanticObjectId(alice.id), "deleted_at": None}).count() == 0


@pytest.mark.wire_only
async def test_the_accounts_own_records_go_in_one_transaction_that_rolls_back(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**alice.headers, "Idempotency-Key": "key-1"}
    assert (await client.post("/api/todos", json={"text": "x"}, headers=headers)).status_code == 201
    ticket = await client.post("/api/todos/events/ticket", headers=alice.headers)
    assert ticket.status_code == 201
    real_delete_many = AsyncCollection.delete_many

    async def failing_on_users(self: AsyncCollection[Any], *args: Any, **kwargs: Any) -> Any:
        if self.name in {"users", "event_tickets", "idempotency_keys"}:
            assert kwargs.get("session") is not None, f"{self.name} deleted outside a transaction"
        if self.name == "users":
            raise RuntimeError("simulated failure at the last step")
        return await real_delete_many(self, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "delete_many", failing_on_users)
    user_id = PydanticObjectId(alice.id)
    with pytest.raises(RuntimeError, match="simulated failure"):
        await account_service.delete_everything_of(
            user_id=user_id, email=alice.email, now=utc_now()
        )
    monkeypatch.undo()
    # Rolled back: the tickets and idempotency records deleted before the failure are back.
    assert await IdempotencyKey.find({"owner_id": user_id}).count() == 1
    assert await EventTicket.find({"owner_id": user_id}).count() == 1
    assert await User.find({"_id": user_id}).count() == 1
    # The sessions went first, on their own: the account logs in again to finish.
    assert await Session.find({"user_id": user_id}).count() == 0


@pytest.mark.wire_only
async def test_leaving_other_lists_is_one_transaction_that_rolls_back(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    bobs = await make_list(client, bob, "Bob's")
    await add_member(bobs, alice, Role.EDITOR)
    before = await stored_list(bobs)

    async def crash(**_: Any) -> None:
        raise RuntimeError("simulated failure after leaving")

    monkeypatch.setattr(invitations, "delete_invitations_of", crash)
    with pytest.raises(RuntimeError, match="simulated failure"):
        await account_service.delete_everything_of(
            user_id=PydanticObjectId(alice.id), email=alice.email, now=utc_now()
        )
    monkeypatch.undo()
    # The membership ended and the member count went down in the transaction: both undone.
    after = await stored_list(bobs)
    assert (after.member_count, after.version) == (before.member_count, before.version)
    membership = await Membership.find_one(
        {"list_id": PydanticObjectId(bobs), "user_id": PydanticObjectId(alice.id)}
    )
    assert membership is not None
    assert membership.removed_at is None


async def test_an_administrator_deletes_an_account_by_email_with_its_todos(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    """The admin CLI's `delete-user`: the same deletion as DELETE /api/me, no password."""
    todo = await create_todo(client, alice)
    deleted = await account_service.delete_user_by_email(
        email=f"  {alice.email.upper()} ", now=utc_now()
    )
    assert deleted
    assert await User.get(PydanticObjectId(alice.id)) is None
    stored = await Todo.get_pymongo_collection().find_one({"_id": PydanticObjectId(todo["id"])})
    assert stored is None or stored.get("deleted_at") is not None
    assert await User.get(PydanticObjectId(bob.id)) is not None


async def test_an_administrator_deleting_an_unknown_email_is_told_so(
    client: AsyncClient, alice: UserAccount
) -> None:
    deleted = await account_service.delete_user_by_email(email="nobody@example.com", now=utc_now())
    assert not deleted
    assert await User.get(PydanticObjectId(alice.id)) is not None


async def test_all_users_lists_every_user_oldest_first(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    emails = [user.email async for user in account_service.all_users()]
    assert emails == [alice.email, bob.email]
