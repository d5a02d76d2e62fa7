"""List use cases of more than one query, and what other features call.

Without transactions, a use case that writes several documents writes each with one
conditional update, in an order that leaves a consistent state wherever it stops, and whose
first write is the one that decides (of two requests at once, one wins there).
"""

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession

from service.accounts.models import User
from service.core.budget import budgeted
from service.core.clock import utc_now
from service.core.store import id_of
from service.errors import Conflict, Forbidden, NotFound, PreconditionFailed
from service.lists import store
from service.lists.access import ADMIN, LIST_NOT_FOUND, Caller, split_memberships
from service.lists.models import Role
from service.lists.schemas import ListPublic, MemberPublic, MemberRole
from service.todos import service as todos

# Called by accounts at signup: every user has a default list from the start.
create_default_list = store.create_default_list
# Called by todos: MAX_TODOS_PER_LIST is a slot taken on the list after a todo is inserted
# (before one is moved in), given back when one is deleted (or moved out).
reserve_todo_slot = store.reserve_todo_slot
release_todo_slots = store.release_todo_slots
# Called by todos: after moving a todo into a list that could be being deleted, and to tell a
# full list from a deleted one when a create gets no slot.
list_is_live = store.list_is_live
# Called by invitations when one is accepted.
add_member = store.add_member

LIST_CHANGED = "The list has changed since that ETag: read it again and retry"
LIST_RACED = "The list changed hands while this request ran: read it again and retry"
MEMBER_NOT_FOUND = "Member not found"
DEFAULT_LIST_NOT_DELETED = "Your default list can't be deleted"
DEFAULT_LIST_NOT_TRANSFERRED = "A default list can't be transferred"
OWNER_ROLE_FIXED = "The owner's role can't be changed; transfer the list to make another owner"
OWNER_CANT_LEAVE = "The owner can't leave the list: transfer it or delete it first"
ALREADY_OWNER = "You already own this list"
NOT_OWNER = "Only the list's owner can do this"
NEW_OWNER_LIST_LIMIT = "That member already owns {} lists, the most anyone may own"


def _public(caller: Caller, stored: dict[str, Any], role: Role) -> ListPublic:
    return ListPublic.from_stored(stored, caller_id=caller.user_id, role=role)


@budgeted
async def read_list(*, caller: Caller, list_id: PydanticObjectId, role: Role) -> ListPublic:
    """The live list as the caller (whose role in it is `role`) sees it; NotFound if gone."""
    stored = await store.get_list(list_id=list_id)
    if stored is None:
        raise NotFound(LIST_NOT_FOUND)
    return _public(caller, stored, role)


@budgeted
async def create_list(
    *, caller: Caller, name: str, max_lists: int, session: AsyncClientSession | None = None
) -> ListPublic:
    """A new list the caller owns; Conflict once they own `max_lists`. In `session`'s
    transaction if given (an import)."""
    stored = await store.create_list(
        owner_id=caller.user_id, name=name, max_lists=max_lists, now=utc_now(), session=session
    )
    # The owner is the caller: their names came with their session, no read needed.
    owner = {"fname": caller.user.fname, "lname": caller.user.lname}
    return _public(caller, {**stored, "owner": [owner]}, Role.OWNER)


@budgeted
async def rename_list(
    *, caller: Caller, list_id: PydanticObjectId, name: str, versions: list[int] | None
) -> ListPublic:
    """Rename a list the caller owns, if at one of `versions` when given."""
    renamed = await store.rename_list(
        list_id=list_id, owner_id=caller.user_id, name=name, versions=versions, now=utc_now()
    )
    if not renamed:
        await _why_not_owned(caller, list_id, versions)
    return await read_list(caller=caller, list_id=list_id, role=Role.OWNER)


async def _why_not_owned(
    caller: Caller, list_id: PydanticObjectId, versions: list[int] | None
) -> NoReturn:
    """Why a write conditional on the caller owning the live list (at `versions`, if given)
    matched nothing: 404 if it is gone, 403 if it changed hands since the request began, 412
    if it is at another version; else it changed hands and came back while this request ran
    (a transfer undone: its new owner left meanwhile), 409."""
    stored = await store.get_list_state(list_id=list_id)
    if stored is None or stored.get("deleted_at") is not None:
        raise NotFound(LIST_NOT_FOUND)
    if stored["owner_id"] != caller.user_id:
        # The session said owner: the list changed hands since (a transfer at the same time).
        raise Forbidden(NOT_OWNER)
    if versions is not None and stored.get("version") not in versions:
        raise PreconditionFailed(LIST_CHANGED)
    raise Conflict(LIST_RACED)


@budgeted
async def delete_list(
    *, caller: Caller, list_id: PydanticObjectId, versions: list[int] | None
) -> None:
    """Delete a list the caller owns (not their default list), if at one of `versions` when
    given: the list becomes a tombstone, then its todos, then every membership ends.

    The tombstone decides (of two deletes, or a delete and a transfer, one wins). If the
    request stops after it, the owner's membership is still live: a retried DELETE finds a
    tombstone of theirs and finishes the deletion.
    """
    if list_id == caller.default_list_id:
        raise Conflict(DEFAULT_LIST_NOT_DELETED)
    now = utc_now()
    if not await store.tombstone_list(
        list_id=list_id, owner_id=caller.user_id, versions=versions, now=now
    ):
        stored = await store.get_list_state(list_id=list_id)
        interrupted = (
            stored is not None
            and stored.get("deleted_at") is not None
            and stored["owner_id"] == caller.user_id
        )
        if not interrupted:
            await _why_not_owned(caller, list_id, versions)
    await todos.delete_todos_in_list(list_id=list_id)
    await store.end_memberships_of_list(list_id=list_id, now=now, keep=caller.user_id)
    # Last, and once: the owner's slot comes back only with the membership that held it.
    if await store.end_membership(list_id=list_id, user_id=caller.user_id, now=now, owner=True):
        await store.release_list_slot(user_id=caller.user_id)


@budgeted
async def list_members(*, list_id: PydanticObjectId) -> list[MemberPublic]:
    """The list's members, the owner first; NotFound if the list is gone."""
    members = await store.list_members(list_id=list_id)
    if not members:  # a list always has its owner: none means it was just deleted
        raise NotFound(LIST_NOT_FOUND)
    return [MemberPublic.from_stored(member) for member in _one_owner(members)]


def _one_owner(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The members with exactly one owner: the list's owner (its `owner_id`), first.

    A transfer writes the list's owner, then the new owner's role, then the old owner's (no
    transactions): in between, the stored roles show two owners (or the new one still as a
    member). The list's owner_id is the one that decides (rename, delete, transfer check it),
    so the roles shown follow it: the old owner is shown as the editor they are becoming.
    While a transfer is undone (the new owner left meanwhile) the owner_id names nobody
    listed: the stored roles, with their one owner, are shown as they are.
    """
    found = members[0].get("list") or []
    owner_id = found[0].get("owner_id") if found else None
    if not any(member["user_id"] == owner_id for member in members):
        return members
    shown = [
        {
            **member,
            "role": Role.OWNER
            if member["user_id"] == owner_id
            else Role.EDITOR
            if member["role"] == Role.OWNER
            else member["role"],
        }
        for member in members
    ]
    return sorted(shown, key=lambda member: member["role"] != Role.OWNER)  # stable


@budgeted
async def change_role(
    *, caller: Caller, list_id: PydanticObjectId, user_id: PydanticObjectId, role: MemberRole
) -> MemberPublic:
    """Give a member of a list the caller owns another role (not the owner: Conflict)."""
    if user_id == caller.user_id:
        raise Conflict(OWNER_ROLE_FIXED)
    new_role = Role(role)
    other = Role.VIEWER if new_role is Role.EDITOR else Role.EDITOR
    now = utc_now()
    # Only from the other non-owner role: never the owner's (a transfer made at the same time
    # stays whole), and a role set again changes nothing (no version bump).
    changed = await store.set_role(
        list_id=list_id, user_id=user_id, role=new_role, from_roles=[other], now=now
    )
    if changed:
        # The member's `List` shows their role: it changed for them.
        await store.bump_list(list_id=list_id, now=now)
    member = await store.get_member(list_id=list_id, user_id=user_id)
    if member is None:
        raise NotFound(MEMBER_NOT_FOUND)
    if member["role"] == Role.OWNER:
        raise Conflict(OWNER_ROLE_FIXED)
    return MemberPublic.from_stored(member)


@budgeted
async def remove_member(
    *, caller: Caller, list_id: PydanticObjectId, user_id: PydanticObjectId, role: Role
) -> None:
    """End a membership: the caller's own (leaving; not the owner), or, for the owner,
    another member's. `role` is the caller's in the list."""
    if user_id == caller.user_id:
        if role is Role.OWNER:
            raise Conflict(OWNER_CANT_LEAVE)
    else:
        caller.require(list_id, ADMIN)
    now = utc_now()
    # Never the owner's membership (a list always has its owner): the filter says so.
    if await store.end_membership(list_id=list_id, user_id=user_id, now=now):
        await store.count_member_out(list_id=list_id, now=now)
        return
    membership = await store.get_membership(list_id=list_id, user_id=user_id)
    if membership is None:
        raise NotFound(MEMBER_NOT_FOUND)
    raise Conflict(OWNER_CANT_LEAVE if user_id == caller.user_id else "The owner can't be removed")


@budgeted
async def transfer_list(
    *, caller: Caller, list_id: PydanticObjectId, user_id: PydanticObjectId, max_lists: int
) -> ListPublic:
    """Make a member the owner of a list the caller owns; the caller becomes an editor.

    The new owner's owned-list slot is taken first (Conflict at `max_lists`); then the list's
    owner changes, conditional on the caller still owning it (of two transfers at once, one
    wins); then the two memberships, the new owner's first. If the member left meanwhile,
    the list goes back to the caller.
    """
    if list_id == caller.default_list_id:
        raise Conflict(DEFAULT_LIST_NOT_TRANSFERRED)
    if user_id == caller.user_id:
        raise Conflict(ALREADY_OWNER)
    if await store.get_membership(list_id=list_id, user_id=user_id) is None:
        raise NotFound(MEMBER_NOT_FOUND)
    if not await store.reserve_list_slot(user_id=user_id, max_lists=max_lists):
        raise Conflict(NEW_OWNER_LIST_LIMIT.format(max_lists))
    now = utc_now()
    if not await store.set_owner(
        list_id=list_id, owner_id=caller.user_id, new_owner_id=user_id, now=now
    ):
        await store.release_list_slot(user_id=user_id)
        await _why_not_owned(caller, list_id, None)
    promoted = await store.set_role(
        list_id=list_id,
        user_id=user_id,
        role=Role.OWNER,
        from_roles=[Role.EDITOR, Role.VIEWER],
        now=now,
    )
    if not promoted:
        # They left (or were removed) since the check: the list goes back as it was.
        await store.set_owner(
            list_id=list_id, owner_id=user_id, new_owner_id=caller.user_id, now=now
        )
        await store.release_list_slot(user_id=user_id)
        raise NotFound(MEMBER_NOT_FOUND)
    await store.set_role(
        list_id=list_id, user_id=caller.user_id, role=Role.EDITOR, from_roles=[Role.OWNER], now=now
    )
    await store.release_list_slot(user_id=caller.user_id)
    return await read_list(caller=caller, list_id=list_id, role=Role.EDITOR)


# ---- For invitations (issue 12, written with the invitations feature) ----------------------
# MAX_PENDING_INVITATIONS: a slot per pending invitation, taken on the list (store.py).
reserve_invitation_slot = store.reserve_invitation_slot
release_invitation_slot = store.release_invitation_slot
# "Inviting an existing member is a 409", checked among the list's members only.
has_member_with_email = store.has_member_with_email

# ---- for the change feed (events); added by the feed helper, other helpers append too ----


def readable_lists(memberships: Iterable[Mapping[str, Any]]) -> set[PydanticObjectId]:
    """The lists that a user's memberships (as stored: read with their session through
    lists.deps.MEMBERSHIPS) let them read: the live ones, by the one rule Caller uses."""
    roles, _ = split_memberships(memberships)
    return set(roles)


# The list, user and role of a membership by its id (the feed, when a membership changes).
membership_by_id = store.membership_by_id


# ---- Accounts and the startup migration (accounts+migration helper) ----
# Called by the startup migration (service/migrations.py): default lists of users stored
# before lists, in bulk.
DefaultListOwner = store.DefaultListOwner
create_default_lists = store.create_default_lists
# Called by accounts: signup removes the default list it made first when the email is taken;
# account deletion deletes the lists the user owns and leaves the others.
discard_default_list = store.discard_default_list
delete_lists_of = store.delete_lists_of
leave_all_lists = store.leave_all_lists

# ---- Export and import (issue 14, transfer feature) ----
# The live lists among some ids, with their names (an export names the lists it holds).
lists_by_ids = store.lists_by_ids
# An import takes the slots of all the todos it adds to a list in one conditional update.
reserve_todo_slots = store.reserve_todo_slots
# An import's writes, in one transaction where the server has them.
in_transaction = store.in_transaction


# The caller an HTTP request of `user` would be (lists.deps.get_caller), for code that acts as
# them without a session: the admin CLI's `export EMAIL`.
ADMIN_SESSION = "admin-cli"


@budgeted
async def caller_of(user: User) -> Caller:
    """`user` as a Caller, with their memberships as a request of theirs reads them."""
    memberships = await store.memberships_of(user_id=id_of(user))
    return Caller.of(user, ADMIN_SESSION, memberships)
