"""Beanie documents of lists: the lists and their memberships."""

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import BaseModel, Field

from service.core.clock import utc_now

ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING

DEFAULT_LIST_NAME = "Inbox"


class Role(StrEnum):
    """A member's role in a list; lists/access.py says what each may do."""

    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


class PendingInvitation(BaseModel):
    """A slot taken by a pending invitation (see TodoList.pending_invitations)."""

    # A hash of the invited email (invitations/service.slot_key): one slot per email, and no
    # email in clear on the list.
    key: str
    expires_at: datetime


class TodoList(Document):
    """A list of todos. Who may read or change it is in its memberships, not here.

    A user's default list has the user's own id as its id: creating it twice (two workers
    migrating at once, a retried signup) is a duplicate key, never a second default list.
    """

    owner_id: PydanticObjectId
    name: str
    is_default: bool = False
    # Members with their owner, and live todos in the list: kept here so that MAX_LIST_MEMBERS
    # and MAX_TODOS_PER_LIST are each checked and taken in one conditional update of this
    # document (a count of memberships or todos before inserting would race).
    member_count: int = 1
    todo_count: int = 0
    # On a default list only: how many lists its owner owns, this one included, so that
    # MAX_LISTS_PER_USER is taken in one conditional update too (the default list is the one
    # document per user that lists has anyway).
    owned_lists: int = 1
    created_at: datetime = Field(default_factory=utc_now)
    # Bumped by every change a member can see in the list's `List`: its name, owner, member
    # count, or a member's role.
    updated_at: datetime = Field(default_factory=utc_now)
    version: int = 1
    # Set when the list is deleted: it stays as a tombstone so that lists sync reports it.
    deleted_at: datetime | None = None
    # Invitations feature: one entry per pending invitation of the list, so that
    # MAX_PENDING_INVITATIONS is taken in one conditional update of this document (lists/store:
    # reserve_invitation_slot). Each entry expires with its invitation, so an invitation
    # removed by its TTL index frees its slot without anyone having to count it down.
    pending_invitations: list[PendingInvitation] = Field(default_factory=list)

    class Settings:
        name = "lists"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            # The lists a user owns (MAX_LISTS_PER_USER, account deletion).
            pymongo.IndexModel([("owner_id", ASC), ("deleted_at", ASC)], name="lists_by_owner"),
        ]


class Membership(Document):
    """One user's role in one list. The owner has one too (role owner), so that "the lists I
    can read" is one query on this collection, by user_id.

    Leaving, being removed or the list being deleted sets `removed_at` (a tombstone kept for
    lists sync, which then reports the list as removed); a later invitation accepted brings the
    same document back.
    """

    list_id: PydanticObjectId
    user_id: PydanticObjectId
    role: Role
    added_at: datetime = Field(default_factory=utc_now)
    # When the role, or the membership itself, last changed.
    updated_at: datetime = Field(default_factory=utc_now)
    removed_at: datetime | None = None

    class Settings:
        name = "memberships"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            # One membership per user and list: accepting twice at once makes one.
            pymongo.IndexModel(
                [("list_id", ASC), ("user_id", ASC)], unique=True, name="memberships_list_user"
            ),
            # Every request of a member reads their memberships with their session, by user_id.
            pymongo.IndexModel([("user_id", ASC)], name="memberships_by_user"),
        ]
