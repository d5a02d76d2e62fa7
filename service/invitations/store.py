"""Every database query of invitations.

Answering or revoking an invitation deletes it: the delete is the claim (of two parallel
answers, one deletes it and the other finds nothing), filtered on the role and expiry read
just before, so that a re-invite in between is never answered by what was read before it.
"""

import contextlib
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.accounts.models import User
from service.core.budget import budgeted
from service.core.store import StoredDocument
from service.invitations.models import Invitation
from service.invitations.schemas import new_invitation_id
from service.lists.models import Role, TodoList

_LISTS = TodoList.Settings.name
_USERS = User.Settings.name


def _invitations() -> AsyncCollection[StoredDocument]:
    # Upserts and claims answer by what pymongo reports (matched, deleted, a duplicate key),
    # which Beanie's update API hides: so the collection. Invitation describes what is stored.
    return Invitation.get_pymongo_collection()


def _pending(now: datetime) -> dict[str, Any]:
    # The TTL monitor removes expired invitations only about once a minute.
    return {"expires_at": {"$gt": now}}


@budgeted
async def upsert_invitation(
    *,
    list_id: PydanticObjectId,
    email: str,
    role: Role,
    invited_by: PydanticObjectId,
    now: datetime,
    expires_at: datetime,
) -> Invitation | None:
    """The list's invitation of `email`, sent now: a new one, or the pending one (even if
    expired) with a new role, inviter and expiry (its id stays). None in the rare case that
    the invitee answered it between the update and the read that follows it."""
    query = {"list_id": list_id, "email": email}
    update = {
        "$set": {
            "role": role,
            "invited_by": invited_by,
            "created_at": now,
            "expires_at": expires_at,
        },
        "$setOnInsert": {"_id": new_invitation_id()},
    }
    try:
        result = await _invitations().update_one(query, update, upsert=True)
    except DuplicateKeyError:
        # Two first invitations of one email at once: the other inserted it, this one
        # updates it (the unique key makes one invitation of them).
        result = await _invitations().update_one(query, update)
    if result.upserted_id is not None:
        return Invitation(
            id=result.upserted_id,
            list_id=list_id,
            email=email,
            role=role,
            invited_by=invited_by,
            created_at=now,
            expires_at=expires_at,
        )
    stored = await _invitations().find_one(query)
    return None if stored is None else Invitation.model_validate(stored)


@budgeted
async def list_pending_of_list(
    *, list_id: PydanticObjectId, now: datetime, limit: int
) -> list[Invitation]:
    """The list's pending, unexpired invitations, oldest first."""
    found = (
        _invitations()
        .find({"list_id": list_id, **_pending(now)})
        .sort([("created_at", 1), ("_id", 1)])
        .limit(limit)
    )
    return [Invitation.model_validate(stored) for stored in await found.to_list(limit)]


@budgeted
async def find_pending_of_list(
    *, list_id: PydanticObjectId, invitation_id: str, now: datetime
) -> Invitation | None:
    """The list's pending invitation with this id, if unexpired."""
    stored = await _invitations().find_one(
        {"_id": invitation_id, "list_id": list_id, **_pending(now)}
    )
    return None if stored is None else Invitation.model_validate(stored)


@budgeted
async def find_addressed(*, invitation_id: str, email: str, now: datetime) -> Invitation | None:
    """The pending, unexpired invitation with this id addressed to `email`, to a list that
    still exists; one round trip."""
    found = await _invitations().aggregate(
        [
            {"$match": {"_id": invitation_id, "email": email, **_pending(now)}},
            {"$limit": 1},
            {
                "$lookup": {
                    "from": _LISTS,
                    "localField": "list_id",
                    "foreignField": "_id",
                    "as": "l",
                }
            },
            {"$unwind": "$l"},
            {"$match": {"l.deleted_at": None}},
            {"$project": {"l": 0}},
        ]
    )
    stored = await found.to_list(1)
    return Invitation.model_validate(stored[0]) if stored else None


@budgeted
async def list_addressed(*, email: str, now: datetime, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` pending, unexpired invitations addressed to `email` to lists that
    still exist, each with its list's name (`list_name`) and its inviter's names (`fname`,
    `lname`); one round trip."""
    found = await _invitations().aggregate(
        [
            {"$match": {"email": email, **_pending(now)}},
            {"$sort": {"created_at": -1, "_id": -1}},
            {"$limit": limit},
            {
                "$lookup": {
                    "from": _LISTS,
                    "localField": "list_id",
                    "foreignField": "_id",
                    "as": "l",
                }
            },
            {"$unwind": "$l"},
            {"$match": {"l.deleted_at": None}},
            {
                "$lookup": {
                    "from": _USERS,
                    "localField": "invited_by",
                    "foreignField": "_id",
                    "as": "u",
                }
            },
            {"$unwind": "$u"},
            {
                "$project": {
                    "list_id": 1,
                    "role": 1,
                    "created_at": 1,
                    "expires_at": 1,
                    "list_name": "$l.name",
                    "fname": "$u.fname",
                    "lname": "$u.lname",
                }
            },
        ]
    )
    received: list[dict[str, Any]] = await found.to_list(limit)
    return received


@budgeted
async def claim(*, invitation: Invitation) -> bool:
    """Delete the invitation as it was read; False if it was answered, revoked or sent again
    since (a re-invite changes its expiry)."""
    deleted = await _invitations().delete_one(
        {"_id": invitation.id, "role": invitation.role, "expires_at": invitation.expires_at}
    )
    return deleted.deleted_count == 1


@budgeted
async def restore(*, invitation: Invitation) -> None:
    """Put back an invitation claimed by an answer that failed (a full list). If the email
    was invited again meanwhile, that newer invitation stands instead."""
    with contextlib.suppress(DuplicateKeyError):
        await _invitations().insert_one(invitation.model_dump(by_alias=True))


@budgeted
async def delete_of_user(
    *, user_id: PydanticObjectId, email: str, session: AsyncClientSession | None = None
) -> list[Invitation]:
    """Delete the invitations the user sent and those addressed to their email; those
    deleted, for their slots to be released. Two queries, each on its index (an `$or` would
    scan the collection on SecantusDB)."""
    deleted: list[Invitation] = []
    for query in ({"invited_by": user_id}, {"email": email}):
        deleted += await _delete(query, session)
    return deleted


@budgeted
async def delete_of_list(
    *, list_id: PydanticObjectId, session: AsyncClientSession | None = None
) -> None:
    """Delete every invitation to the list."""
    await _invitations().delete_many({"list_id": list_id}, session=session)


async def _delete(query: dict[str, Any], session: AsyncClientSession | None) -> list[Invitation]:
    found = await _invitations().find(query, session=session).to_list(None)
    if found:
        await _invitations().delete_many(query, session=session)
    return [Invitation.model_validate(stored) for stored in found]
