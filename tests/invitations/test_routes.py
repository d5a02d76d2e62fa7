"""The invitation routes: who may call each, what each answers, and what it changes."""

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from httpx import AsyncClient

from service.invitations.models import Invitation
from service.lists.models import Membership, TodoList
from tests.invitations.conftest import (
    NOT_AN_INVITATION,
    Team,
    answer,
    inbox,
    invite,
    invited,
    make_list,
    pending,
)
from tests.utils import (
    DEFAULT_PASSWORD,
    FakeClock,
    UserAccount,
    create_account,
    log_in,
    sign_up,
)

INVITATION_KEYS = {"id", "list_id", "email", "role", "created_at", "expires_at"}
MISSING_LIST = "0123456789abcdef01234567"


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def membership(list_id: str, user: UserAccount) -> Membership | None:
    return await Membership.find_one(
        {"list_id": PydanticObjectId(list_id), "user_id": PydanticObjectId(user.id)}
    )


# ---- inviting ----


async def test_the_owner_invites_an_email_and_gets_the_invitation(
    client: AsyncClient, team: Team, outsider_email: str, clock: FakeClock
) -> None:
    response = await invite(client, team.owner, team.list_id, outsider_email.upper(), "editor")
    assert response.status_code == 202
    body = response.json()
    assert set(body) == INVITATION_KEYS
    assert body["list_id"] == team.list_id
    assert body["email"] == outsider_email  # normalised as at signup
    assert body["role"] == "editor"
    assert instant(body["created_at"]) == clock.now
    assert instant(body["expires_at"]) == clock.now + timedelta(days=7)


async def test_invitation_ids_are_random_not_object_ids(
    client: AsyncClient, team: Team, outsider_email: str
) -> None:
    first = await invited(client, team.owner, team.list_id, outsider_email)
    second = await invited(client, team.owner, team.list_id, "x" + outsider_email)
    for invitation in (first, second):
        # 24 random bytes: 192 bits, URL-safe base64.
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", invitation["id"])
    assert first["id"] != second["id"]


async def test_the_answer_is_the_same_whether_or_not_the_email_has_an_account(
    client: AsyncClient, team: Team, bob: UserAccount, outsider_email: str
) -> None:
    known = await invite(client, team.owner, team.list_id, bob.email)
    unknown = await invite(client, team.owner, team.list_id, outsider_email)
    assert known.status_code == unknown.status_code == 202
    assert known.headers.keys() == unknown.headers.keys()

    def shape(body: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in body.items() if key not in {"id", "email"}}

    assert shape(known.json()) == shape(unknown.json())


async def test_inviting_yourself_is_a_conflict(client: AsyncClient, team: Team) -> None:
    response = await invite(client, team.owner, team.list_id, team.owner.email.upper())
    assert response.status_code == 409
    assert response.json() == {"detail": "You can't invite yourself"}
    assert await pending(client, team.owner, team.list_id) == []


@pytest.mark.parametrize("member", ["editor", "viewer"])
async def test_inviting_a_member_is_a_conflict(
    client: AsyncClient, team: Team, member: str
) -> None:
    email = getattr(team, member).email.upper()  # compared normalised
    response = await invite(client, team.owner, team.list_id, email, "editor")
    assert response.status_code == 409
    assert response.json() == {"detail": "This email belongs to a member of the list already"}
    assert await pending(client, team.owner, team.list_id) == []


async def test_inviting_again_replaces_the_pending_invitation(
    client: AsyncClient, team: Team, bob: UserAccount, clock: FakeClock
) -> None:
    first = await invited(client, team.owner, team.list_id, bob.email, "viewer")
    clock.advance(days=3)
    second = await invited(client, team.owner, team.list_id, bob.email.upper(), "editor")
    # Same invitation (same id), new role and expiry.
    assert second["id"] == first["id"]
    assert second["role"] == "editor"
    assert instant(second["created_at"]) == clock.now
    assert instant(second["expires_at"]) == clock.now + timedelta(days=7)
    assert await pending(client, team.owner, team.list_id) == [second]
    [received] = await inbox(client, bob)
    assert (received["id"], received["role"]) == (first["id"], "editor")
    response = await answer(client, bob, first["id"])
    assert response.json()["role"] == "editor"


async def test_inviting_again_after_expiry_makes_it_acceptable_again(
    client: AsyncClient, team: Team, bob: UserAccount, clock: FakeClock
) -> None:
    first = await invited(client, team.owner, team.list_id, bob.email)
    clock.advance(days=8)
    assert (await answer(client, bob, first["id"])).status_code == 404
    again = await invited(client, team.owner, team.list_id, bob.email)
    assert (await answer(client, bob, again["id"])).status_code == 200


# ---- who may do what: owner, editor, viewer, stranger, and the invitee ----


async def test_only_the_owner_may_invite(
    client: AsyncClient, team: Team, outsider_email: str
) -> None:
    for member in (team.editor, team.viewer):
        response = await invite(client, member, team.list_id, outsider_email)
        assert response.status_code == 403
        assert response.json() == {"detail": "Only the list's owner can do this"}
    stranger = await invite(client, team.stranger, team.list_id, outsider_email)
    missing = await invite(client, team.stranger, MISSING_LIST, outsider_email)
    assert stranger.status_code == missing.status_code == 404
    assert stranger.json() == missing.json() == {"detail": "List not found"}
    assert await pending(client, team.owner, team.list_id) == []


async def test_only_the_owner_may_list_the_invitations(
    client: AsyncClient, team: Team, outsider_email: str
) -> None:
    sent = await invited(client, team.owner, team.list_id, outsider_email)
    path = f"/api/lists/{team.list_id}/invitations"
    for member in (team.editor, team.viewer):
        response = await client.get(path, headers=member.headers)
        assert response.status_code == 403
    stranger = await client.get(path, headers=team.stranger.headers)
    missing = await client.get(f"/api/lists/{MISSING_LIST}/invitations", headers=team.owner.headers)
    assert stranger.status_code == missing.status_code == 404
    assert stranger.json() == missing.json() == {"detail": "List not found"}
    assert await pending(client, team.owner, team.list_id) == [sent]


async def test_only_the_owner_may_revoke(client: AsyncClient, team: Team, bob: UserAccount) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    path = f"/api/lists/{team.list_id}/invitations/{sent['id']}"
    for member in (team.editor, team.viewer):
        assert (await client.delete(path, headers=member.headers)).status_code == 403
    for caller in (team.stranger, bob):  # the invitee isn't a member either
        response = await client.delete(path, headers=caller.headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "List not found"}
    assert await pending(client, team.owner, team.list_id) == [sent]
    assert [received["id"] for received in await inbox(client, bob)] == [sent["id"]]


async def test_only_the_invitee_may_accept_or_decline(
    client: AsyncClient, team: Team, bob: UserAccount
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    for caller in (team.owner, team.editor, team.viewer, team.stranger):
        for how in ("accept", "decline"):
            response = await answer(client, caller, sent["id"], how)
            assert response.status_code == 404
            assert response.json() == {"detail": "Invitation not found"}
        assert await inbox(client, caller) == []
    assert await pending(client, team.owner, team.list_id) == [sent]
    assert (await answer(client, bob, sent["id"])).status_code == 200


@pytest.mark.mock_only
async def test_every_route_needs_a_token(client: AsyncClient, team: Team) -> None:
    base = f"/api/lists/{team.list_id}/invitations"
    calls = [
        ("POST", base),
        ("GET", base),
        ("DELETE", f"{base}/{NOT_AN_INVITATION}"),
        ("GET", "/api/invitations"),
        ("POST", f"/api/invitations/{NOT_AN_INVITATION}/accept"),
        ("POST", f"/api/invitations/{NOT_AN_INVITATION}/decline"),
    ]
    body = {"email": "carol@example.com", "role": "viewer"}
    for method, path in calls:
        response = await client.request(method, path, json=body if path == base else None)
        assert response.status_code == 401, (method, path)


@pytest.mark.mock_only
@pytest.mark.parametrize(
    "body",
    [
        {"email": "carol@example.com", "role": "owner"},
        {"email": "carol@example.com"},
        {"email": "not an email", "role": "viewer"},
        {"email": "carol@example.com", "role": "viewer", "list_id": MISSING_LIST},
        {"email": "c" * 250 + "@example.com", "role": "viewer"},
    ],
)
async def test_an_invalid_invitation_is_refused(
    client: AsyncClient, alice: UserAccount, body: dict[str, Any]
) -> None:
    response = await client.post(
        f"/api/lists/{alice.id}/invitations", json=body, headers=alice.headers
    )
    assert response.status_code == 422


@pytest.mark.mock_only
async def test_a_malformed_invitation_id_is_refused(
    client: AsyncClient, alice: UserAccount
) -> None:
    for path in (
        f"/api/lists/{alice.id}/invitations/{PydanticObjectId()}",
        f"/api/invitations/{PydanticObjectId()}/accept",
        "/api/invitations/short/decline",
    ):
        method = "DELETE" if path.startswith("/api/lists") else "POST"
        response = await client.request(method, path, headers=alice.headers)
        assert response.status_code == 422, path


# ---- the owner's view ----


async def test_the_owner_lists_pending_invitations_oldest_first(
    client: AsyncClient, team: Team, clock: FakeClock
) -> None:
    sent = []
    for name in ("carol", "dave", "erin"):
        sent.append(await invited(client, team.owner, team.list_id, f"{name}@example.com"))
        clock.advance(minutes=1)
    assert await pending(client, team.owner, team.list_id) == sent


async def test_a_revoked_invitation_can_not_be_answered(
    client: AsyncClient, team: Team, bob: UserAccount
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    path = f"/api/lists/{team.list_id}/invitations/{sent['id']}"
    response = await client.delete(path, headers=team.owner.headers)
    assert response.status_code == 204
    assert await pending(client, team.owner, team.list_id) == []
    assert await inbox(client, bob) == []
    for how in ("accept", "decline"):
        assert (await answer(client, bob, sent["id"], how)).status_code == 404
    again = await client.delete(path, headers=team.owner.headers)
    assert again.status_code == 404
    assert again.json() == {"detail": "Invitation not found"}


async def test_revoking_an_unknown_or_another_lists_invitation_is_404(
    client: AsyncClient, team: Team, bob: UserAccount, outsider_email: str
) -> None:
    bobs = await invited(client, bob, bob.id, outsider_email)  # bob's default list
    for invitation_id in (bobs["id"], NOT_AN_INVITATION):
        response = await client.delete(
            f"/api/lists/{team.list_id}/invitations/{invitation_id}", headers=team.owner.headers
        )
        assert response.status_code == 404
        assert response.json() == {"detail": "Invitation not found"}
    assert await pending(client, bob, bob.id) == [bobs]


# ---- the invitee's view ----


async def test_the_invitee_sees_the_invitation(
    client: AsyncClient, team: Team, bob: UserAccount
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email, "editor")
    assert await inbox(client, bob) == [
        {
            "id": sent["id"],
            "list": {"id": team.list_id, "name": "Inbox"},
            "role": "editor",
            "invited_by": {"fname": "Ada", "lname": "Lovelace"},
            "created_at": sent["created_at"],
            "expires_at": sent["expires_at"],
        }
    ]


async def test_invitations_are_listed_newest_first(
    client: AsyncClient, bob: UserAccount, clock: FakeClock
) -> None:
    owners = [await create_account(client) for _ in range(3)]
    sent = []
    for owner in owners:
        sent.append(await invited(client, owner, owner.id, bob.email))
        clock.advance(minutes=1)
    assert [received["id"] for received in await inbox(client, bob)] == [
        invitation["id"] for invitation in reversed(sent)
    ]


async def test_an_account_made_after_the_invitation_sees_it_and_is_no_member_until_it_accepts(
    client: AsyncClient, team: Team, outsider_email: str
) -> None:
    sent = await invited(client, team.owner, team.list_id, outsider_email)
    user = await sign_up(client, email=outsider_email.upper())
    newcomer = UserAccount(
        user["id"], user["email"], DEFAULT_PASSWORD, await log_in(client, user["email"])
    )
    assert [received["id"] for received in await inbox(client, newcomer)] == [sent["id"]]
    assert await membership(team.list_id, newcomer) is None
    response = await answer(client, newcomer, sent["id"])
    assert response.status_code == 200
    assert response.json()["role"] == "viewer"


# ---- accepting and declining ----


async def test_accepting_makes_a_member_with_the_invited_role_and_answers_the_list(
    client: AsyncClient, team: Team, bob: UserAccount
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email, "editor")
    response = await answer(client, bob, sent["id"])
    assert response.status_code == 200
    body = response.json()
    stored = await TodoList.get(PydanticObjectId(team.list_id))
    assert stored is not None
    assert body == {
        "id": team.list_id,
        "name": "Inbox",
        "is_default": False,  # default only to its owner
        "role": "editor",
        "owner": {"id": team.owner.id, "fname": "Ada", "lname": "Lovelace"},
        "member_count": 4,  # owner, editor, viewer and bob
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "version": stored.version,
    }
    joined = await membership(team.list_id, bob)
    assert joined is not None
    assert (joined.role, joined.removed_at) == ("editor", None)
    assert await inbox(client, bob) == []
    assert await pending(client, team.owner, team.list_id) == []
    # It is spent, and bob is now a member: inviting him again is a conflict.
    assert (await answer(client, bob, sent["id"])).status_code == 404
    assert (await invite(client, team.owner, team.list_id, bob.email)).status_code == 409


async def test_a_new_member_has_the_rights_of_the_invited_role(
    client: AsyncClient, team: Team, bob: UserAccount, outsider_email: str
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email, "viewer")
    await answer(client, bob, sent["id"])
    # A member now: the owner-only routes are 403 to him, not 404.
    response = await invite(client, bob, team.list_id, outsider_email)
    assert response.status_code == 403


async def test_accepting_twice_at_once_makes_one_membership(
    client: AsyncClient, team: Team, bob: UserAccount
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    responses = await asyncio.gather(*(answer(client, bob, sent["id"]) for _ in range(5)))
    assert sorted(response.status_code for response in responses) == [200, 404, 404, 404, 404]
    assert (
        await Membership.find(
            {"list_id": PydanticObjectId(team.list_id), "user_id": PydanticObjectId(bob.id)}
        ).count()
        == 1
    )
    stored = await TodoList.get(PydanticObjectId(team.list_id))
    assert stored is not None
    assert stored.member_count == 4


@pytest.mark.parametrize("settings_overrides", [{"max_list_members": 3}])
async def test_accepting_into_a_full_list_is_a_conflict_and_the_invitation_stays(
    client: AsyncClient, team: Team, bob: UserAccount
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    response = await answer(client, bob, sent["id"])
    assert response.status_code == 409
    assert response.json() == {"detail": "This list is full: at most 3 members."}
    assert await membership(team.list_id, bob) is None
    assert [received["id"] for received in await inbox(client, bob)] == [sent["id"]]
    assert await pending(client, team.owner, team.list_id) == [sent]
    stored = await TodoList.get(PydanticObjectId(team.list_id))
    assert stored is not None
    assert stored.member_count == 3


async def test_declining_deletes_the_invitation(
    client: AsyncClient, team: Team, bob: UserAccount
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    response = await answer(client, bob, sent["id"], "decline")
    assert response.status_code == 204
    assert await inbox(client, bob) == []
    assert await pending(client, team.owner, team.list_id) == []
    assert await membership(team.list_id, bob) is None
    for how in ("accept", "decline"):
        assert (await answer(client, bob, sent["id"], how)).status_code == 404


async def test_an_expired_invitation_is_gone_for_everyone(
    client: AsyncClient, team: Team, bob: UserAccount, clock: FakeClock
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    clock.advance(days=7)  # expires_at is not after now any more
    assert await pending(client, team.owner, team.list_id) == []
    assert await inbox(client, bob) == []
    for how in ("accept", "decline"):
        assert (await answer(client, bob, sent["id"], how)).status_code == 404
    response = await client.delete(
        f"/api/lists/{team.list_id}/invitations/{sent['id']}", headers=team.owner.headers
    )
    assert response.status_code == 404
    assert await membership(team.list_id, bob) is None


async def test_an_invitation_can_be_accepted_until_it_expires(
    client: AsyncClient, team: Team, bob: UserAccount, clock: FakeClock
) -> None:
    sent = await invited(client, team.owner, team.list_id, bob.email)
    clock.advance(days=7, milliseconds=-1)
    assert (await answer(client, bob, sent["id"])).status_code == 200


async def test_an_invitation_to_a_deleted_list_is_gone(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, clock: FakeClock
) -> None:
    list_id = await make_list(alice)
    sent = await invited(client, alice, list_id, bob.email)
    # As list deletion leaves it: a tombstone (the lists feature deletes its invitations too).
    await TodoList.get_pymongo_collection().update_one(
        {"_id": PydanticObjectId(list_id)}, {"$set": {"deleted_at": clock.now}}
    )
    assert await inbox(client, bob) == []
    for how in ("accept", "decline"):
        response = await answer(client, bob, sent["id"], how)
        assert response.status_code == 404
        assert response.json() == {"detail": "Invitation not found"}
    assert await membership(list_id, bob) is None


async def test_deleting_a_list_deletes_its_pending_invitations(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    list_id = await make_list(alice)
    await invited(client, alice, list_id, bob.email)
    await invited(client, alice, alice.id, bob.email)  # another list's stays
    response = await client.delete(f"/api/lists/{list_id}", headers=alice.headers)
    assert response.status_code == 204, response.text
    left = await Invitation.get_pymongo_collection().find({}).to_list(None)
    assert [str(found["list_id"]) for found in left] == [alice.id]


async def test_accepting_as_a_member_already_is_a_conflict_and_spends_the_invitation(
    client: AsyncClient, team: Team, outsider_email: str
) -> None:
    # The viewer changes their email to one that was invited after they joined.
    sent = await invited(client, team.owner, team.list_id, outsider_email, "editor")
    changed = await client.patch(
        "/api/me",
        json={"email": outsider_email, "current_password": DEFAULT_PASSWORD},
        headers=team.viewer.headers,
    )
    assert changed.status_code == 200, changed.text
    response = await answer(client, team.viewer, sent["id"])
    assert response.status_code == 409
    assert response.json() == {"detail": "You are a member of this list already"}
    joined = await membership(team.list_id, team.viewer)
    assert joined is not None
    assert joined.role == "viewer"
    assert await pending(client, team.owner, team.list_id) == []
