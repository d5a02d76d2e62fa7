"""Who may do what in a list: the roles' rights, and the caller's roles in every list.

The one place these rules live. Every request of a member reads the caller's memberships with
their session (one round trip, lists/deps.get_caller); a list the caller has no live membership
of is, to them, a list that doesn't exist (404, the same body).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId

from service.accounts.models import User
from service.core.store import id_of
from service.errors import Forbidden, NotFound
from service.lists.models import Role

LIST_NOT_FOUND = "List not found"

# What each role may do, from least to most: a right needs at least its role.
_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}
# read: the list, its members, its todos; write: its todos; admin: everything else.
READ, WRITE, ADMIN = Role.VIEWER, Role.EDITOR, Role.OWNER


def allows(role: Role, needed: Role) -> bool:
    """Whether `role` has the rights of `needed` (an owner can do what an editor can)."""
    return _RANK[role] >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class Removal:
    """A list the caller could read and no longer can (left, removed, deleted)."""

    list_id: PydanticObjectId
    role: Role  # the role they had
    at: datetime


def split_memberships(
    memberships: Iterable[Mapping[str, Any]],
) -> tuple[dict[PydanticObjectId, Role], dict[PydanticObjectId, Removal]]:
    """A user's memberships as stored (read with their session through lists.deps.MEMBERSHIPS):
    their role in each list they can read (a live membership), and the ones that ended."""
    roles: dict[PydanticObjectId, Role] = {}
    removals: dict[PydanticObjectId, Removal] = {}
    for membership in memberships:
        list_id = PydanticObjectId(membership["list_id"])
        role = Role(membership["role"])
        if membership.get("removed_at") is None:
            roles[list_id] = role
        else:
            removals[list_id] = Removal(list_id, role, membership["removed_at"])
    return roles, removals


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user, their session, and their role in each list they can read."""

    user: User
    session_id: str
    roles: Mapping[PydanticObjectId, Role] = field(default_factory=dict)
    # Memberships that ended (tombstones kept for lists sync), newest state per list.
    removals: Mapping[PydanticObjectId, Removal] = field(default_factory=dict)
    # Every membership document as stored, for lists sync (when each last changed).
    memberships: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def of(cls, user: User, session_id: str, memberships: list[dict[str, Any]]) -> "Caller":
        roles, removals = split_memberships(memberships)
        return cls(user, session_id, roles, removals, tuple(memberships))

    @property
    def user_id(self) -> PydanticObjectId:
        return id_of(self.user)

    @property
    def default_list_id(self) -> PydanticObjectId:
        """The caller's default list: its id is the user's (lists/models.TodoList)."""
        return self.user_id

    def role_in(self, list_id: PydanticObjectId) -> Role | None:
        """The caller's role in the list; None if they can't read it."""
        return self.roles.get(list_id)

    def readable(self) -> list[PydanticObjectId]:
        """Every list the caller can read, in no particular order."""
        return list(self.roles)

    def writable(self) -> list[PydanticObjectId]:
        """Every list whose todos the caller may change."""
        return [list_id for list_id, role in self.roles.items() if allows(role, WRITE)]

    def require(self, list_id: PydanticObjectId, needed: Role) -> Role:
        """The caller's role in the list if it allows `needed`; NotFound for a list they can't
        read (as for one that doesn't exist), Forbidden for a member whose role is too low."""
        role = self.roles.get(list_id)
        if role is None:
            raise NotFound(LIST_NOT_FOUND)
        if not allows(role, needed):
            raise Forbidden(_FORBIDDEN[needed])
        return role


_FORBIDDEN = {
    WRITE: "Viewers can't change this list's todos; ask its owner for the editor role",
    ADMIN: "Only the list's owner can do this",
    READ: "Forbidden",  # never raised: every member can read
}
