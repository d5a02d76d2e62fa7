"""The invitation id a path names."""

from typing import Annotated

from fastapi import Path

from service.invitations.schemas import INVITATION_ID_PATTERN

InvitationId = Annotated[
    str,
    Path(
        pattern=INVITATION_ID_PATTERN,
        description="The invitation's id: 32 random URL-safe characters, not an ObjectId.",
    ),
]
