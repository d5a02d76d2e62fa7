"""Every database query of lists and memberships.

Limits are slots taken by one conditional update of a counter before inserting (a count
before an insert would let parallel requests all pass): lists owned on the owner's default
list (`owned_lists`), members on the list (`member_count`), todos on the list (`todo_count`,
taken by the todos store through reserve_todo_slot).
"""

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from service.core.budget import budgeted
from service.core.clock import utc_now
from service.core.store import StoredDocument
from service.errors import Conflict
from service.lists.models import DEFAULT_LIST_NAME, Membership, Role, TodoList

LIVE: dict[str, Any] = {"deleted_at": None}


def _lists() -> AsyncCollection[StoredDocument]:
    return TodoList.get_pymongo_collection()


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
    *, owner_id: PydanticObjectId, name: str, max_lists: int, now: datetime
) -> dict[str, Any]:
    """A new list owned by owner_id (and its owner membership); Conflict past `max_lists`."""
    reserved = await _lists().update_one(
        {"_id": owner_id, "owned_lists": {"$not": {"$gte": max_lists}}},
        {"$inc": {"owned_lists": 1}},
    )
    if reserved.modified_count != 1:
        raise Conflict(f"List limit reached: at most {max_lists} lists; delete some first.")
    stored: dict[str, Any] = TodoList(
        id=PydanticObjectId(), owner_id=owner_id, name=name, created_at=now, updated_at=now
    ).model_dump(by_alias=True)
    try:
        await _lists().insert_one(stored)
        await _memberships().insert_one(_membership(stored["_id"], owner_id, Role.OWNER, now))
    except Exception:
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
        {"list_id": {"$in": list_ids}, "removed_at": None},
        {"$set": {"removed_at": now, "updated_at": now}},
    )
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
            {"user_id": user_id, "removed_at": None, "role": {"$ne": Role.OWNER}},
            {"list_id": 1},
            session=session,
        )
        .to_list(None)
    )
    left = 0
    for membership in memberships:
        ended = await _memberships().update_one(
            {"_id": membership["_id"], "removed_at": None},
            {"$set": {"removed_at": now, "updated_at": now}},
            session=session,
        )
        if ended.modified_count != 1:
            continue
        left += 1
        await _lists().update_one(
            {"_id": membership["list_id"], "member_count": {"$gt": 1}},
            {"$inc": {"member_count": -1, "version": 1}, "$set": {"updated_at": now}},
            session=session,
        )
    return left
