"""Every database query of lists and memberships.

Limits are slots taken by one conditional update of a counter before inserting (a count
before an insert would let parallel requests all pass): lists owned on the owner's default
list (`owned_lists`), members on the list (`member_count`), todos on the list (`todo_count`,
taken by the todos store through reserve_todo_slot).
"""

import contextlib
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

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


# ---- for the change feed (events); added by the feed helper, other helpers append too ----


@budgeted
async def membership_by_id(*, membership_id: Any) -> StoredDocument | None:
    """A membership's list, user and role by its id, tombstone or not; None if there is none
    (the feed reads it when a membership changes: an update's description lacks them)."""
    found: StoredDocument | None = await _memberships().find_one(
        {"_id": membership_id}, projection={"list_id": 1, "user_id": 1, "role": 1}
    )
    return found
