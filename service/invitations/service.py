"""Invitation use cases, and what account and list deletion call.

Limits are taken before anything is written: the inviter's daily count (accounts/throttling),
then a pending slot on the list (lists/service.reserve_invitation_slot), then the invitation
is upserted on its unique (list, email). Answering one claims it first (store.claim), so of
two parallel answers exactly one goes on.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession

from service.accounts import throttling
from service.config import Settings
from service.errors import Conflict, NotFound
from service.invitations import store
from service.invitations.models import Invitation
from service.invitations.schemas import InvitationCreate
from service.lists import service as lists
from service.lists.access import Caller
from service.lists.models import Role

INVITATION_NOT_FOUND = "Invitation not found"
# GET /api/invitations answers at most this many, the newest.
RECEIVED_LIMIT = 100
# A claim fails only if the invitation was answered or revoked (the next read finds nothing)
# or sent again (the next read finds the new one): a third failure would need yet another
# re-invite in between.
_CLAIM_ROUNDS = 3


def slot_key(email: str) -> str:
    """What an invited email's pending slot on the list is known by: a hash (128 bits), so
    that the list document holds no email in clear."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


async def invite(
    *,
    caller: Caller,
    list_id: PydanticObjectId,
    new: InvitationCreate,
    settings: Settings,
    now: datetime,
) -> Invitation:
    """Invite `new.email` to the caller's list (the caller is its owner: lists/deps.OwnedList).

    The answer never depends on whether the email has an account: nothing here looks it up
    (the member check looks among the list's members only). 409 for the caller's own email,
    a member's, or a list with MAX_PENDING_INVITATIONS pending; 429 past the caller's
    MAX_INVITATIONS_PER_DAY (counted first, every attempt).
    """
    await throttling.count_invitation(settings=settings, user_id=caller.user_id, now=now)
    if new.email == caller.user.email:  # both normalised
        raise Conflict("You can't invite yourself")
    if await lists.has_member_with_email(list_id=list_id, email=new.email):
        raise Conflict("This email belongs to a member of the list already")
    expires_at = now + timedelta(days=settings.invitation_ttl_days)
    await lists.reserve_invitation_slot(
        list_id=list_id,
        key=slot_key(new.email),
        expires_at=expires_at,
        max_pending=settings.max_pending_invitations,
        now=now,
    )
    invitation = await store.upsert_invitation(
        list_id=list_id,
        email=new.email,
        role=Role(new.role),
        invited_by=caller.user_id,
        now=now,
        expires_at=expires_at,
    )
    if invitation is None:
        raise Conflict("The invitee answered this invitation just now; send it again if needed")
    return invitation


async def pending_of_list(
    *, list_id: PydanticObjectId, settings: Settings, now: datetime
) -> list[Invitation]:
    """The list's pending invitations, oldest first (at most MAX_PENDING_INVITATIONS)."""
    return await store.list_pending_of_list(
        list_id=list_id, now=now, limit=settings.max_pending_invitations
    )


async def revoke(*, list_id: PydanticObjectId, invitation_id: str, now: datetime) -> None:
    """Withdraw the list's pending invitation; NotFound for an unknown, expired or answered
    one, or one of another list."""
    invitation = await _claim(
        lambda: store.find_pending_of_list(list_id=list_id, invitation_id=invitation_id, now=now)
    )
    await _release_slot(invitation)


async def received(*, caller: Caller, now: datetime) -> list[dict[str, Any]]:
    """The pending invitations addressed to the caller's email (see store.list_addressed)."""
    return await store.list_addressed(email=caller.user.email, now=now, limit=RECEIVED_LIMIT)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The list the caller joined, and their role in it."""

    list_id: PydanticObjectId
    role: Role


async def accept(
    *, caller: Caller, invitation_id: str, settings: Settings, now: datetime
) -> Accepted:
    """Make the caller a member of the invitation's list with its role.

    NotFound for an invitation not addressed to the caller's email, expired, revoked or
    answered (two parallel accepts: one claims it, the other finds nothing), or to a list
    that is gone. Conflict if the list is full (MAX_LIST_MEMBERS): the invitation stays
    pending. Conflict too if the caller is a member already (an email changed to an invited
    one): the invitation is spent.
    """
    invitation = await _claim(lambda: _addressed(caller, invitation_id, now))
    try:
        added = await lists.add_member(
            list_id=invitation.list_id,
            user_id=caller.user_id,
            role=invitation.role,
            max_members=settings.max_list_members,
            now=now,
        )
    except Exception:
        # Not joined (a full list, the database): the invitation stays as it was. Between
        # the claim and this, it was briefly gone: a parallel answer to it got a 404. (A
        # cancelled request loses it: restoring would need awaiting inside the cancellation;
        # the owner can invite again.)
        await store.restore(invitation=invitation)
        raise
    await _release_slot(invitation)
    if not added:
        raise Conflict("You are a member of this list already")
    return Accepted(invitation.list_id, invitation.role)


async def decline(*, caller: Caller, invitation_id: str, now: datetime) -> None:
    """Turn the invitation down (it is deleted); NotFound as for `accept`."""
    invitation = await _claim(lambda: _addressed(caller, invitation_id, now))
    await _release_slot(invitation)


async def delete_invitations_of(
    *, user_id: PydanticObjectId, email: str, session: AsyncClientSession | None = None
) -> None:
    """Delete the invitations the user sent and those addressed to their email (account
    deletion), freeing their lists' pending slots."""
    for invitation in await store.delete_of_user(user_id=user_id, email=email, session=session):
        await _release_slot(invitation, session=session)


async def delete_invitations_of_list(
    *, list_id: PydanticObjectId, session: AsyncClientSession | None = None
) -> None:
    """Delete every invitation to the list (list deletion; the list's slots go with it)."""
    await store.delete_of_list(list_id=list_id, session=session)


async def _addressed(caller: Caller, invitation_id: str, now: datetime) -> Invitation | None:
    return await store.find_addressed(invitation_id=invitation_id, email=caller.user.email, now=now)


async def _claim(find: Callable[[], Awaitable[Invitation | None]]) -> Invitation:
    """The invitation `find` reads, deleted by this request (store.claim); NotFound if there
    is none, or if it was answered meanwhile."""
    for _ in range(_CLAIM_ROUNDS):
        invitation = await find()
        if invitation is None:
            break
        if await store.claim(invitation=invitation):
            return invitation
    raise NotFound(INVITATION_NOT_FOUND)


async def _release_slot(
    invitation: Invitation, *, session: AsyncClientSession | None = None
) -> None:
    await lists.release_invitation_slot(
        list_id=invitation.list_id,
        key=slot_key(invitation.email),
        expires_at=invitation.expires_at,
        session=session,
    )
