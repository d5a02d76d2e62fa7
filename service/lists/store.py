"""Every database query of lists and memberships.

Limits are slots taken by one conditional update of a counter (a count before an insert
would let parallel requests all pass): lists owned on the owner's default list
(`owned_lists`), members on the list (`member_count`), todos on the list (`todo_count`, taken
by todos through reserve_todo_slot, right after the todo's insert).
"""

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from service.accounts.models import User
from service.core import transactions
from service.core.budget import budgeted
from service.core.clock import utc_now
from service.core.store import StoredDocument
from service.core.transactions import TransactionSteps
from service.core.watch import changed_here
from service.errors import Conflict, NotFound
from service.lists.access import LIST_NOT_FOUND
from service.lists.models import DEFAULT_LIST_NAME, Membership, Role, TodoList

LIVE: dict[str, Any] = {"deleted_at": None}
ACCOUNT_DELETED = "The account is being deleted"
R = TypeVar("R")
_USERS = User.Settings.name


def _lists() -> AsyncCollection[StoredDocument]:
    return TodoList.get_pymongo_collection()


# Every write of memberships tells this worker's authentication cache (core.watch) before it
# returns: the member's next request here reads their roles anew. By member where the write
# knows them, else by list.
def _members_changed(*user_ids: PydanticObjectId) -> None:
    changed_here(User.Settings.name, *user_ids)


def _lists_changed(*list_ids: PydanticObjectId) -> None:
    changed_here(TodoList.Settings.name, *list_ids)


def _memberships() -> AsyncCollection[StoredDocument]:
    return Membership.get_pymongo_collection()


async def _insert_ignoring_duplicate(
    collection: AsyncCollection[StoredDocument], document: StoredDocument
) -> bool:
    """Insert; False if a document with its unique key is already there."""
    try:
        await collection.insert_one(document)
    except DuplicateKeyError:
        return False
    return True


@budgeted
async def create_default_list(
    *, user_id: PydanticObjectId, todo_count: int = 0, now: datetime | None = None
) -> None:
    """The user's default list and their owner membership, unless they exist: safe to repeat,
    and with several workers at once (the list's id is the user's; the membership's key is
    unique)."""
    now = now or utc_now()
    stored = TodoList(
        id=user_id,
        owner_id=user_id,
        name=DEFAULT_LIST_NAME,
        is_default=True,
        todo_count=todo_count,
        created_at=now,
        updated_at=now,
    ).model_dump(by_alias=True)
    await _insert_ignoring_duplicate(_lists(), stored)
    await _insert_ignoring_duplicate(_memberships(), _membership(user_id, user_id, Role.OWNER, now))


def _membership(
    list_id: PydanticObjectId, user_id: PydanticObjectId, role: Role, now: datetime
) -> dict[str, Any]:
    stored: dict[str, Any] = Membership(
        list_id=list_id, user_id=user_id, role=role, added_at=now, updated_at=now
    ).model_dump(by_alias=True, exclude={"id"})
    return stored


@budgeted
async def create_list(
    *,
    owner_id: PydanticObjectId,
    name: str,
    max_lists: int,
    now: datetime,
    session: AsyncClientSession | None = None,
) -> dict[str, Any]:
    """A new list owned by owner_id (and its owner membership); Conflict past `max_lists`. In
    `session`'s transaction if given (which then undoes all of it on a failure)."""
    # The counter is on the owner's default list, live while the account is: an account
    # deletion tombstones it first thing (delete_lists_of), so a create still running for a
    # deleted account (a long import) can't add lists behind it.
    reserved = await _lists().update_one(
        {"_id": owner_id, **LIVE, "owned_lists": {"$not": {"$gte": max_lists}}},
        {"$inc": {"owned_lists": 1}},
        session=session,
    )
    if reserved.modified_count != 1:
        if not await list_is_live(list_id=owner_id, session=session):
            raise Conflict(ACCOUNT_DELETED)
        raise Conflict(f"List limit reached: at most {max_lists} lists; delete some first.")
    stored: dict[str, Any] = TodoList(
        id=PydanticObjectId(), owner_id=owner_id, name=name, created_at=now, updated_at=now
    ).model_dump(by_alias=True)
    try:
        await _lists().insert_one(stored, session=session)
        await _memberships().insert_one(
            _membership(stored["_id"], owner_id, Role.OWNER, now), session=session
        )
        _members_changed(owner_id)
    except Exception:
        if session is None:  # in a transaction, its abort gives the slot back
            with contextlib.suppress(PyMongoError):
                await _lists().update_one({"_id": owner_id}, {"$inc": {"owned_lists": -1}})
        raise
    return stored


@budgeted
async def add_member(
    *,
    list_id: PydanticObjectId,
    user_id: PydanticObjectId,
    role: Role,
    max_members: int,
    now: datetime,
) -> bool:
    """Make user_id a member of the live list with `role`; False if they already are one.
    Conflict if the list has `max_members` members already.

    The member slot is taken first (one conditional update of the list, which also bumps its
    version: its member count changed), then the membership is inserted, or a removed one
    brought back; the unique (list, user) key makes two parallel adds one membership.
    """
    reserved = await _lists().update_one(
        {"_id": list_id, **LIVE, "member_count": {"$lt": max_members}},
        {"$inc": {"member_count": 1, "version": 1}, "$set": {"updated_at": now}},
    )
    if reserved.modified_count != 1:
        raise Conflict(f"This list is full: at most {max_members} members.")
    revived = await _memberships().update_one(
        {"list_id": list_id, "user_id": user_id, "removed_at": {"$ne": None}},
        {"$set": {"role": role, "added_at": now, "updated_at": now, "removed_at": None}},
    )
    added = revived.modified_count == 1 or await _insert_ignoring_duplicate(
        _memberships(), _membership(list_id, user_id, role, now)
    )
    _members_changed(user_id)
    if not added:
        await _lists().update_one(
            {"_id": list_id, "member_count": {"$gt": 1}},
            {"$inc": {"member_count": -1, "version": 1}, "$set": {"updated_at": now}},
        )
    return added


@budgeted
async def reserve_todo_slot(*, list_id: PydanticObjectId, max_todos: int) -> bool:
    """Take one of the live list's `max_todos` todo slots; False if they are all taken (or the
    list is gone)."""
    reserved = await _lists().update_one(
        {"_id": list_id, **LIVE, "todo_count": {"$lt": max_todos}}, {"$inc": {"todo_count": 1}}
    )
    return reserved.modified_count == 1


@budgeted
async def release_todo_slots(*, list_id: PydanticObjectId, count: int) -> None:
    """Give back `count` of the list's todo slots (after deletes, a move out, a failed insert)."""
    await _lists().update_one(
        {"_id": list_id, "todo_count": {"$gte": count}}, {"$inc": {"todo_count": -count}}
    )


@budgeted
async def list_is_live(
    *, list_id: PydanticObjectId, session: AsyncClientSession | None = None
) -> bool:
    """Whether the list exists and is not deleted (a todo just moved there must go with it
    otherwise: todos/service.py, _stay_in_live_list). In `session`'s transaction if given."""
    found = await _lists().find_one({"_id": list_id, **LIVE}, {"_id": 1}, session=session)
    return found is not None


# ---- reading lists ----


def _with_owner(list_match: dict[str, Any], *stages: dict[str, Any]) -> list[dict[str, Any]]:
    """A pipeline reading the lists `list_match` selects, then `stages`, each list with its
    owner's user document (`owner`: a $lookup by _id) in the same round trip."""
    return [
        {"$match": list_match},
        *stages,
        {
            "$lookup": {
                "from": User.Settings.name,
                "localField": "owner_id",
                "foreignField": "_id",
                "as": "owner",
            }
        },
        # Only what a List shows of its owner (not their password hash).
        {"$project": {"owner.hashed_password": 0, "owner.email": 0}},
    ]


async def _aggregate(
    collection: AsyncCollection[StoredDocument], pipeline: list[dict[str, Any]]
) -> list[StoredDocument]:
    cursor = await collection.aggregate(pipeline)
    documents: list[StoredDocument] = await cursor.to_list(None)
    return documents


@budgeted
async def get_list(*, list_id: PydanticObjectId) -> StoredDocument | None:
    """The live list with its owner (`owner`); None if there is none."""
    found = await _aggregate(_lists(), _with_owner({"_id": list_id, **LIVE}))
    return found[0] if found else None


@budgeted
async def get_list_state(*, list_id: PydanticObjectId) -> StoredDocument | None:
    """The list as stored, tombstone or not (why a conditional write matched nothing)."""
    stored: StoredDocument | None = await _lists().find_one({"_id": list_id})
    return stored


# A listing's order: the caller's default list first (rank 0), then by creation.
PAGE_KEYS = ("rank", "created_at", "_id")


@budgeted
async def page_lists(
    *,
    list_ids: list[PydanticObjectId],
    first_id: PydanticObjectId,
    after: tuple[int, datetime, PydanticObjectId] | None,
    limit: int,
) -> list[StoredDocument]:
    """Up to `limit` of the live lists among `list_ids`, `first_id` first, then oldest first,
    after the list whose sort key (PAGE_KEYS) is `after`; each with its owner.

    The first $match reads the lists by _id (an index); the rank and the cursor condition are
    computed on those only (the caller's lists), never on the collection.
    """
    stages: list[dict[str, Any]] = [
        {"$addFields": {"rank": {"$cond": [{"$eq": ["$_id", first_id]}, 0, 1]}}},
    ]
    if after is not None:
        rank, created_at, list_id = after
        stages.append(
            {
                "$match": {
                    "$or": [
                        {"rank": {"$gt": rank}},
                        {"rank": rank, "created_at": {"$gt": created_at}},
                        {"rank": rank, "created_at": created_at, "_id": {"$gt": list_id}},
                    ]
                }
            }
        )
    stages += [{"$sort": dict.fromkeys(PAGE_KEYS, 1)}, {"$limit": limit}]
    return await _aggregate(_lists(), _with_owner({"_id": {"$in": list_ids}, **LIVE}, *stages))


@budgeted
async def changed_lists(
    *,
    list_ids: list[PydanticObjectId],
    also: list[PydanticObjectId],
    since: datetime,
    until: datetime,
) -> list[StoredDocument]:
    """The lists among `list_ids` changed in (since, until], tombstones included, and those in
    `also` whatever their changes; each with its owner (lists sync)."""
    changed = {
        "$match": {
            "$or": [
                {"_id": {"$in": also}},
                {"updated_at": {"$gt": since, "$lte": until}},
            ]
        }
    }
    return await _aggregate(_lists(), _with_owner({"_id": {"$in": list_ids}}, changed))


# ---- changing a list ----


def _bump(now: datetime) -> dict[str, Any]:
    """What every change a member can see in a `List` does to the list."""
    return {"$set": {"updated_at": now}, "$inc": {"version": 1}}


def _owned(
    list_id: PydanticObjectId, owner_id: PydanticObjectId, versions: list[int] | None
) -> dict[str, Any]:
    query: dict[str, Any] = {"_id": list_id, "owner_id": owner_id, **LIVE}
    if versions is not None:
        query["version"] = {"$in": versions}
    return query


@budgeted
async def rename_list(
    *,
    list_id: PydanticObjectId,
    owner_id: PydanticObjectId,
    name: str,
    versions: list[int] | None,
    now: datetime,
) -> bool:
    """Rename the live list owner_id owns (if at one of `versions`, when given); False if no
    list matched. The owner and version checks are the update's filter: one operation."""
    bump = _bump(now)
    result = await _lists().update_one(
        _owned(list_id, owner_id, versions),
        {"$set": {**bump["$set"], "name": name}, "$inc": bump["$inc"]},
    )
    return result.matched_count == 1


@budgeted
async def tombstone_list(
    *,
    list_id: PydanticObjectId,
    owner_id: PydanticObjectId,
    versions: list[int] | None,
    now: datetime,
) -> bool:
    """Mark the live list owner_id owns deleted (if at one of `versions`, when given), unless it
    is a default list; False if none matched. It stays as a tombstone for lists sync."""
    bump = _bump(now)
    result = await _lists().update_one(
        {**_owned(list_id, owner_id, versions), "is_default": False},
        {"$set": {**bump["$set"], "deleted_at": now}, "$inc": bump["$inc"]},
    )
    return result.modified_count == 1


@budgeted
async def bump_list(*, list_id: PydanticObjectId, now: datetime) -> None:
    """Record a change its members see in the live list (a member's role)."""
    await _lists().update_one({"_id": list_id, **LIVE}, _bump(now))


@budgeted
async def count_member_out(*, list_id: PydanticObjectId, now: datetime) -> None:
    """One member fewer in the list (its owner always stays)."""
    update = _bump(now)
    update["$inc"]["member_count"] = -1
    await _lists().update_one({"_id": list_id, "member_count": {"$gt": 1}}, update)


@budgeted
async def reserve_list_slot(*, user_id: PydanticObjectId, max_lists: int) -> bool:
    """Take one of the user's `max_lists` owned-list slots (on their default list); False if
    they are all taken."""
    reserved = await _lists().update_one(
        {"_id": user_id, **LIVE, "owned_lists": {"$not": {"$gte": max_lists}}},
        {"$inc": {"owned_lists": 1}},
    )
    return reserved.modified_count == 1


@budgeted
async def release_list_slot(*, user_id: PydanticObjectId) -> None:
    """Give back one of the user's owned-list slots (a list deleted or handed over)."""
    await _lists().update_one(
        {"_id": user_id, "owned_lists": {"$gt": 1}}, {"$inc": {"owned_lists": -1}}
    )


@budgeted
async def set_owner(
    *,
    list_id: PydanticObjectId,
    owner_id: PydanticObjectId,
    new_owner_id: PydanticObjectId,
    now: datetime,
) -> bool:
    """Hand the live, non-default list owner_id owns to new_owner_id; False if it isn't such a
    list (any more). Of two transfers at once, exactly one finds the old owner in the filter."""
    bump = _bump(now)
    result = await _lists().update_one(
        {**_owned(list_id, owner_id, None), "is_default": False},
        {"$set": {**bump["$set"], "owner_id": new_owner_id}, "$inc": bump["$inc"]},
    )
    return result.modified_count == 1


# ---- memberships ----


def _with_user(membership_match: dict[str, Any], *stages: dict[str, Any]) -> list[dict[str, Any]]:
    """A pipeline reading memberships, then `stages`, each with its user (`user`, by _id)."""
    return [
        {"$match": membership_match},
        *stages,
        {
            "$lookup": {
                "from": User.Settings.name,
                "localField": "user_id",
                "foreignField": "_id",
                "as": "user",
            }
        },
        {"$project": {"user.hashed_password": 0}},
    ]


LIVE_MEMBER: dict[str, Any] = {"removed_at": None}


@budgeted
async def list_members(*, list_id: PydanticObjectId) -> list[StoredDocument]:
    """The list's live memberships with their users: the owner first, then by when they were
    added; each with the list's `owner_id` (who owns it now, whatever the roles stored while a
    transfer is under way: service.list_members). Bounded by MAX_LIST_MEMBERS."""
    rank = {"$addFields": {"rank": {"$cond": [{"$eq": ["$role", Role.OWNER.value]}, 0, 1]}}}
    order = {"$sort": {"rank": 1, "added_at": 1, "user_id": 1}}
    owner = {
        "$lookup": {
            "from": TodoList.Settings.name,
            "localField": "list_id",
            "foreignField": "_id",
            "as": "list",
        }
    }
    return await _aggregate(
        _memberships(),
        _with_user(
            {"list_id": list_id, **LIVE_MEMBER},
            rank,
            order,
            owner,
            {"$project": {"list.pending_invitations": 0}},
        ),
    )


@budgeted
async def get_member(
    *, list_id: PydanticObjectId, user_id: PydanticObjectId
) -> StoredDocument | None:
    """The user's live membership of the list with their user document; None if none."""
    found = await _aggregate(
        _memberships(), _with_user({"list_id": list_id, "user_id": user_id, **LIVE_MEMBER})
    )
    return found[0] if found else None


@budgeted
async def get_membership(
    *, list_id: PydanticObjectId, user_id: PydanticObjectId
) -> StoredDocument | None:
    """The user's live membership of the list as stored; None if none."""
    stored: StoredDocument | None = await _memberships().find_one(
        {"list_id": list_id, "user_id": user_id, **LIVE_MEMBER}
    )
    return stored


@budgeted
async def set_role(
    *,
    list_id: PydanticObjectId,
    user_id: PydanticObjectId,
    role: Role,
    from_roles: list[Role],
    now: datetime,
) -> bool:
    """Give the user's live membership of the list `role` if it has one of `from_roles` now
    (the condition is the update's filter); whether it did."""
    result = await _memberships().update_one(
        {
            "list_id": list_id,
            "user_id": user_id,
            "role": {"$in": [r.value for r in from_roles]},
            **LIVE_MEMBER,
        },
        {"$set": {"role": role.value, "updated_at": now}},
    )
    _members_changed(user_id)
    return result.modified_count == 1


@budgeted
async def end_membership(
    *, list_id: PydanticObjectId, user_id: PydanticObjectId, now: datetime, owner: bool = False
) -> bool:
    """End the user's live membership of the list (kept as a tombstone for lists sync); only a
    non-owner's unless `owner`. False if there was no such membership."""
    query: dict[str, Any] = {"list_id": list_id, "user_id": user_id, **LIVE_MEMBER}
    query["role"] = Role.OWNER.value if owner else {"$ne": Role.OWNER.value}
    result = await _memberships().update_one(
        query, {"$set": {"removed_at": now, "updated_at": now}}
    )
    _members_changed(user_id)
    return result.modified_count == 1


@budgeted
async def end_memberships_of_list(
    *, list_id: PydanticObjectId, now: datetime, keep: PydanticObjectId
) -> None:
    """End every live membership of the list but `keep`'s (a deleted list's)."""
    await _memberships().update_many(
        {"list_id": list_id, "user_id": {"$ne": keep}, **LIVE_MEMBER},
        {"$set": {"removed_at": now, "updated_at": now}},
    )
    _lists_changed(list_id)


# ---- For invitations (issue 12, written with the invitations feature) ----------------------
# A list's pending invitations hold slots in its `pending_invitations` (lists/models.py), one
# per invited email, each with its invitation's expiry: MAX_PENDING_INVITATIONS is taken by one
# conditional update (no `max`-th entry yet), never a count of invitations then an insert.
# Expired entries are dropped only when the list is full; a slot whose invitation is gone
# (accepted, declined, revoked, expired) before its release only makes the limit stricter
# until the slot's expiry.

_SLOTS = "pending_invitations"
# Each round refreshes or takes the email's slot, or drops expired ones; a round only fails
# to when another request changed the slots meanwhile.
_SLOT_ROUNDS = 3


@budgeted
async def reserve_invitation_slot(
    *, list_id: PydanticObjectId, key: str, expires_at: datetime, max_pending: int, now: datetime
) -> None:
    """Hold a pending invitation slot of the live list for `key` (an invited email) until
    `expires_at`: the email's slot if it has one (a re-invite: its expiry moves), else a new
    one. Conflict when `max_pending` unexpired slots are taken; NotFound if the list is gone.
    """
    for _ in range(_SLOT_ROUNDS):
        # A new email first: the common case, one round trip.
        taken = await _lists().update_one(
            {
                "_id": list_id,
                **LIVE,
                f"{_SLOTS}.key": {"$ne": key},
                f"{_SLOTS}.{max_pending - 1}": {"$exists": False},
            },
            {"$push": {_SLOTS: {"key": key, "expires_at": expires_at}}},
        )
        if taken.modified_count == 1:
            return
        refreshed = await _lists().update_one(
            {"_id": list_id, **LIVE, f"{_SLOTS}.key": key},
            {"$set": {f"{_SLOTS}.$.expires_at": expires_at}},
        )
        if refreshed.matched_count == 1:
            return
        dropped = await _lists().update_one(
            {"_id": list_id, **LIVE}, {"$pull": {_SLOTS: {"expires_at": {"$lte": now}}}}
        )
        if dropped.matched_count == 0:
            raise NotFound(LIST_NOT_FOUND)
        if dropped.modified_count == 0 and not await _has_slot(list_id, key):
            break  # full of unexpired slots
        # Expired slots were dropped, or the email's slot appeared meanwhile: again.
    raise Conflict(
        f"This list has {max_pending} pending invitations, the most it may have; "
        "revoke some or wait for them to be answered."
    )


async def _has_slot(list_id: PydanticObjectId, key: str) -> bool:
    return await _lists().find_one({"_id": list_id, f"{_SLOTS}.key": key}, {"_id": 1}) is not None


@budgeted
async def release_invitation_slot(
    *,
    list_id: PydanticObjectId,
    key: str,
    expires_at: datetime,
    session: AsyncClientSession | None = None,
) -> None:
    """Free the slot of an invitation that is gone (answered, revoked, deleted with an
    account). Only the slot with that very expiry: a re-invite of the same email since has
    moved it, and keeps it."""
    await _lists().update_one(
        {"_id": list_id},
        {"$pull": {_SLOTS: {"key": key, "expires_at": expires_at}}},
        session=session,
    )


@budgeted
async def has_member_with_email(*, list_id: PydanticObjectId, email: str) -> bool:
    """Whether a live member of the list has this (normalised) email.

    Looks among the list's members only (at most MAX_LIST_MEMBERS lookups by _id), never up
    the email among all users: it costs the same whether or not the email has an account.
    """
    found = await _memberships().aggregate(
        [
            {"$match": {"list_id": list_id, "removed_at": None}},
            {
                "$lookup": {
                    "from": _USERS,
                    "localField": "user_id",
                    "foreignField": "_id",
                    "as": "u",
                }
            },
            {"$match": {"u.email": email}},
            {"$limit": 1},
            {"$project": {"_id": 1}},
        ]
    )
    return bool(await found.to_list(1))


# ---- for the change feed (events); added by the feed helper, other helpers append too ----


@budgeted
async def membership_by_id(*, membership_id: Any) -> StoredDocument | None:
    """A membership's list, user and role by its id, tombstone or not; None if there is none
    (the feed reads it when a membership changes: an update's description lacks them)."""
    found: StoredDocument | None = await _memberships().find_one(
        {"_id": membership_id}, projection={"list_id": 1, "user_id": 1, "role": 1}
    )
    return found


# ---- Accounts and the startup migration (accounts+migration helper) ----

DUPLICATE_KEY = 11000


@dataclass(frozen=True, slots=True)
class DefaultListOwner:
    """A user stored before lists existed, as the startup migration gives them a default list."""

    user_id: PydanticObjectId
    todo_count: int  # their live todos, which move into it
    created_at: datetime  # the list's: the user's own


def _ignore_duplicates(error: BulkWriteError) -> None:
    """Re-raise a bulk insert's error unless every failure is a duplicate key."""
    if any(failure["code"] != DUPLICATE_KEY for failure in error.details["writeErrors"]):
        raise error


@budgeted
async def create_default_lists(*, owners: list[DefaultListOwner]) -> None:
    """create_default_list for many users in two round trips (the startup migration's): each
    user's default list and owner membership, unless they exist."""
    if not owners:
        return
    stored_lists = [
        TodoList(
            id=owner.user_id,
            owner_id=owner.user_id,
            name=DEFAULT_LIST_NAME,
            is_default=True,
            todo_count=owner.todo_count,
            created_at=owner.created_at,
            updated_at=owner.created_at,
        ).model_dump(by_alias=True)
        for owner in owners
    ]
    memberships = [
        _membership(owner.user_id, owner.user_id, Role.OWNER, owner.created_at) for owner in owners
    ]
    # Unordered: a duplicate (another worker got there first) doesn't stop the rest.
    for collection, documents in ((_lists(), stored_lists), (_memberships(), memberships)):
        try:
            await collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            _ignore_duplicates(error)


@budgeted
async def discard_default_list(*, user_id: PydanticObjectId) -> None:
    """Remove a default list made for a user who was then not stored (their email was taken):
    nobody ever saw its id."""
    await _memberships().delete_many({"list_id": user_id})
    await _lists().delete_many({"_id": user_id, "owner_id": user_id, "is_default": True})


@budgeted
async def delete_lists_of(*, user_id: PydanticObjectId, now: datetime) -> list[PydanticObjectId]:
    """Delete every list the user owns (as tombstones, version bumped, so that lists sync reports
    them) and end every membership of them (so their members can no longer read them); the ids
    of every list the user owns, those deleted before included.

    Safe to repeat: an interrupted account deletion run again finds the same lists, so that
    its caller can finish deleting their todos.
    """
    owned = await _lists().find({"owner_id": user_id}, {"_id": 1}).to_list(None)
    list_ids: list[PydanticObjectId] = [document["_id"] for document in owned]
    if not list_ids:
        return []
    # Lists first: a todo slot can't be taken in a deleted list (reserve_todo_slot), so no
    # todo is added to them from here on.
    await _lists().update_many(
        {"_id": {"$in": list_ids}, **LIVE},
        {"$set": {"deleted_at": now, "updated_at": now}, "$inc": {"version": 1}},
    )
    await _memberships().update_many(
        {"list_id": {"$in": list_ids}, **LIVE_MEMBER},
        {"$set": {"removed_at": now, "updated_at": now}},
    )
    _lists_changed(*list_ids)
    return list_ids


@budgeted
async def leave_all_lists(
    *, user_id: PydanticObjectId, now: datetime, session: AsyncClientSession | None = None
) -> int:
    """End the user's memberships of lists they don't own: each membership becomes a tombstone
    and its list loses a member (member count, version and updated_at, so that its other
    members see the change). In `session`'s transaction if given. How many they left.

    Membership by membership, each one's end decides its list's count (a retry or a parallel
    removal can't take a member off twice); without a transaction, a crash between the two
    writes leaves that list's count one high (stricter, never looser).
    """
    memberships = (
        await _memberships()
        .find(
            {"user_id": user_id, **LIVE_MEMBER, "role": {"$ne": Role.OWNER.value}},
            {"list_id": 1},
            session=session,
        )
        .to_list(None)
    )
    left = 0
    for membership in memberships:
        ended = await _memberships().update_one(
            {"_id": membership["_id"], **LIVE_MEMBER},
            {"$set": {"removed_at": now, "updated_at": now}},
            session=session,
        )
        if ended.modified_count != 1:
            continue
        _members_changed(user_id)
        left += 1
        await _lists().update_one(
            {"_id": membership["list_id"], "member_count": {"$gt": 1}},
            {"$inc": {"member_count": -1, "version": 1}, "$set": {"updated_at": now}},
            session=session,
        )
    return left


# ---- For export and import (issue 14, transfer feature) ----


@budgeted
async def in_transaction(steps: TransactionSteps[R]) -> R:
    """`steps` in one transaction where the server has them, else with no session (see
    core/transactions.py): an import's lists and todos, all or nothing. Budgeted as a whole:
    the transaction, its retries included, ends within what the request has left."""
    return await transactions.in_transaction(_lists().database, steps)


@budgeted
async def lists_by_ids(*, list_ids: list[PydanticObjectId]) -> list[StoredDocument]:
    """The live lists among `list_ids` (name, default or not), oldest first: what an export
    names. Bounded by the caller's memberships."""
    found: list[StoredDocument] = (
        await _lists()
        .find(
            {"_id": {"$in": list_ids}, **LIVE},
            {"name": 1, "is_default": 1, "created_at": 1, "todo_count": 1},
            sort=[("is_default", -1), ("created_at", 1), ("_id", 1)],
        )
        .to_list(None)
    )
    return found


@budgeted
async def memberships_of(*, user_id: PydanticObjectId) -> list[StoredDocument]:
    """Every membership document of the user, live or ended: what lists.deps.MEMBERSHIPS
    reads with a session, for a caller without one (the admin CLI's export)."""
    found: list[StoredDocument] = await _memberships().find({"user_id": user_id}).to_list(None)
    return found


@budgeted
async def reserve_todo_slots(
    *,
    list_id: PydanticObjectId,
    count: int,
    max_todos: int,
    session: AsyncClientSession | None = None,
) -> bool:
    """Take `count` of the live list's `max_todos` todo slots at once (an import); False, with
    none taken, if fewer are left (or the list is gone). In `session`'s transaction if given."""
    reserved = await _lists().update_one(
        {"_id": list_id, **LIVE, "todo_count": {"$lte": max_todos - count}},
        {"$inc": {"todo_count": count}},
        session=session,
    )
    return reserved.modified_count == 1
