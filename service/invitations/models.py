"""The Beanie document of invitations."""

from datetime import datetime
from typing import ClassVar

import pymongo
from beanie import Document, PydanticObjectId

from service.lists.models import Role

ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING


class Invitation(Document):
    """A pending invitation of an email to a list, with the role it offers.

    Accepting, declining or revoking it deletes it; so does the TTL index once it expires
    (about a minute after: expiry is also checked on every read).
    """

    # Random (schemas.new_invitation_id), not an ObjectId: whoever holds the id of an
    # invitation addressed to them can answer it, and ObjectIds made around one's own could
    # be guessed.
    id: str  # type: ignore[assignment]  # a string key instead of an ObjectId
    list_id: PydanticObjectId
    # Normalised as at signup (accounts/schemas.normalise_email), so that the account that
    # has (or will have) this email finds it.
    email: str
    role: Role  # editor or viewer
    invited_by: PydanticObjectId
    # When it was last sent: a re-invite replaces role, inviter and both instants.
    created_at: datetime
    expires_at: datetime

    class Settings:
        name = "invitations"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            # One pending invitation per email and list: inviting again is an upsert on it.
            # Also the list's pending invitations (by list_id; at most MAX_PENDING_INVITATIONS).
            pymongo.IndexModel(
                [("list_id", ASC), ("email", ASC)], unique=True, name="invitations_list_email"
            ),
            # GET /api/invitations: those addressed to the caller, newest first.
            pymongo.IndexModel(
                [("email", ASC), ("created_at", DESC), ("_id", DESC)],
                name="invitations_by_email_newest_first",
            ),
            # Account deletion: the invitations the user sent.
            pymongo.IndexModel([("invited_by", ASC)], name="invitations_by_inviter"),
            pymongo.IndexModel([("expires_at", ASC)], expireAfterSeconds=0, name="invitations_ttl"),
        ]
