"""Invitations: a list's owner invites, revokes and lists them; their invitee sees them,
accepts or declines."""

from fastapi import APIRouter, status

from service.core.deps import ClockDep, SettingsDep
from service.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from service.invitations import service
from service.invitations.deps import InvitationId
from service.invitations.schemas import (
    InvitationCreate,
    InvitationPublic,
    ReceivedInvitation,
)
from service.lists import service as lists
from service.lists.deps import CurrentCaller, OwnedList
from service.lists.schemas import ListPublic

router = APIRouter(tags=["invitations"], responses=error_responses(Unauthorized))


@router.post(
    "/lists/{list_id}/invitations",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Invite someone to a list",
    responses=error_responses(Forbidden, NotFound, Conflict, TooManyRequests),
)
async def invite(
    body: InvitationCreate, owned: OwnedList, settings: SettingsDep, clock: ClockDep
) -> InvitationPublic:
    """Invite an email to your list with a role (owner only). They become a member only by
    accepting it (`POST /api/invitations/{invitation_id}/accept`).

    The answer is the same whether or not the email has an account: one made later can
    accept. Inviting the same email again replaces its pending invitation (same id, new role
    and expiry). 409 for your own email, a member's, or a list with MAX_PENDING_INVITATIONS
    pending; 429 (with `Retry-After`) past MAX_INVITATIONS_PER_DAY sent in 24 hours (every
    attempt counts). Invitations expire after INVITATION_TTL_DAYS.
    """
    invitation = await service.invite(
        caller=owned.caller, list_id=owned.list_id, new=body, settings=settings, now=clock()
    )
    return InvitationPublic.from_document(invitation)


@router.get(
    "/lists/{list_id}/invitations",
    summary="List a list's pending invitations",
    responses=error_responses(Forbidden, NotFound),
)
async def list_invitations(
    owned: OwnedList, settings: SettingsDep, clock: ClockDep
) -> list[InvitationPublic]:
    """Your list's pending, unexpired invitations, oldest first, as a bare array (owner only;
    at most MAX_PENDING_INVITATIONS)."""
    pending = await service.pending_of_list(list_id=owned.list_id, settings=settings, now=clock())
    return [InvitationPublic.from_document(invitation) for invitation in pending]


@router.delete(
    "/lists/{list_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an invitation",
    responses=error_responses(Forbidden, NotFound),
)
async def revoke_invitation(invitation_id: InvitationId, owned: OwnedList, clock: ClockDep) -> None:
    """Withdraw a pending invitation of your list (owner only): it can't be accepted any more.
    404 for an unknown, expired or answered invitation, or one of another list."""
    await service.revoke(list_id=owned.list_id, invitation_id=invitation_id, now=clock())


@router.get("/invitations", summary="List the invitations addressed to you")
async def list_received_invitations(
    caller: CurrentCaller, clock: ClockDep
) -> list[ReceivedInvitation]:
    """The pending, unexpired invitations addressed to your email, newest first (at most
    100), as a bare array; invitations sent to your email before you signed up included."""
    return [
        ReceivedInvitation.from_stored(found)
        for found in await service.received(caller=caller, now=clock())
    ]


@router.post(
    "/invitations/{invitation_id}/accept",
    summary="Accept an invitation",
    responses=error_responses(NotFound, Conflict),
)
async def accept_invitation(
    invitation_id: InvitationId, caller: CurrentCaller, settings: SettingsDep, clock: ClockDep
) -> ListPublic:
    """Join the invitation's list with the role it offers; the answer is the list as you
    now see it.

    404 for an invitation that isn't addressed to your email, has expired, was revoked or
    answered already, or whose list was deleted. 409 if the list has MAX_LIST_MEMBERS members
    (the invitation stays pending), or if you are a member already (it is spent).
    """
    accepted = await service.accept(
        caller=caller, invitation_id=invitation_id, settings=settings, now=clock()
    )
    # NotFound if the list was deleted right after you joined.
    return await lists.read_list(caller=caller, list_id=accepted.list_id, role=accepted.role)


@router.post(
    "/invitations/{invitation_id}/decline",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Decline an invitation",
    responses=error_responses(NotFound),
)
async def decline_invitation(
    invitation_id: InvitationId, caller: CurrentCaller, clock: ClockDep
) -> None:
    """Turn an invitation down: it is deleted. 404 as for accepting."""
    await service.decline(caller=caller, invitation_id=invitation_id, now=clock())
