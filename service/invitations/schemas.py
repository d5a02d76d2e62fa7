"""What invitations send and receive."""

import secrets
from typing import Any, Literal, Self

from pydantic import BaseModel, Field

from service.accounts.schemas import Email
from service.core.schemas import InputModel, UtcDatetime
from service.invitations.models import Invitation
from service.lists.models import Role

# 24 random bytes (192 bits) in URL-safe base64: 32 characters.
INVITATION_ID_BYTES = 24
INVITATION_ID_PATTERN = r"^[A-Za-z0-9_-]{32}$"


def new_invitation_id() -> str:
    """An unguessable invitation id."""
    return secrets.token_urlsafe(INVITATION_ID_BYTES)


InvitedRole = Literal["editor", "viewer"]


class InvitationCreate(InputModel):
    email: Email
    role: InvitedRole = Field(description="The role the invitee gets by accepting.")


class InvitationPublic(BaseModel):
    """An invitation as its list's owner sees it."""

    id: str
    list_id: str
    email: str = Field(description="Normalised (NFKC, lower-case), as emails are at signup.")
    role: InvitedRole
    created_at: UtcDatetime = Field(description="When it was (last) sent.")
    expires_at: UtcDatetime = Field(
        description="After this it can't be accepted (INVITATION_TTL_DAYS after sending)."
    )

    @classmethod
    def from_document(cls, invitation: Invitation) -> Self:
        return cls(
            id=invitation.id,
            list_id=str(invitation.list_id),
            email=invitation.email,
            role=_invited_role(invitation.role),
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
        )


def _invited_role(role: Role) -> InvitedRole:
    return "editor" if role is Role.EDITOR else "viewer"


class InvitedList(BaseModel):
    id: str
    name: str


class Inviter(BaseModel):
    fname: str
    lname: str


class ReceivedInvitation(BaseModel):
    """An invitation addressed to you."""

    id: str
    list: InvitedList
    role: InvitedRole
    invited_by: Inviter
    created_at: UtcDatetime
    expires_at: UtcDatetime

    @classmethod
    def from_stored(cls, found: dict[str, Any]) -> Self:
        """From what invitations/store.list_addressed reads."""
        return cls(
            id=found["_id"],
            list=InvitedList(id=str(found["list_id"]), name=found["list_name"]),
            role=_invited_role(Role(found["role"])),
            invited_by=Inviter(fname=found["fname"], lname=found["lname"]),
            created_at=found["created_at"],
            expires_at=found["expires_at"],
        )
