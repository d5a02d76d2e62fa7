"""Every database query of accounts: users, and their sessions (logins) and refresh tokens.

Every rule about time (expiry, the reuse grace window) is checked against the stored
timestamps: the TTL monitor removes expired sessions only about once a minute.
"""

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from service.accounts.models import (
    IP_MAX_LENGTH,
    REFRESH_HASHES_KEPT,
    USER_AGENT_MAX_LENGTH,
    Session,
    User,
)
from service.core import transactions
from service.core.budget import budgeted
from service.core.store import update_then_read
from service.core.transactions import TransactionSteps
from service.core.watch import changed_here
from service.errors import Conflict

# Every write here that changes what a session may do (a revocation, a user changed or
# deleted) tells this worker's authentication cache before it returns (core.watch): refused
# on the very next request. A user's changes name the user: all their entries go.
USERS, SESSIONS = User.Settings.name, Session.Settings.name


@budgeted
async def create_user(
    *,
    user_id: PydanticObjectId,
    email: str,
    fname: str,
    lname: str,
    hashed_password: str,
    now: datetime,
) -> User:
    """Insert a user with this id; Conflict if the (normalised) email is taken."""
    user = User(
        id=user_id,
        email=email,
        fname=fname,
        lname=lname,
        hashed_password=hashed_password,
        created_at=now,
    )
    try:
        # The unique index decides: a check-then-insert would race with a parallel signup.
        await user.insert()
    except DuplicateKeyError as exc:
        raise Conflict("Email already registered.") from exc
    return user


@budgeted
async def get_user_by_email(*, email: str) -> User | None:
    """The user with this (normalised: schemas.normalise_email) email, if any."""
    return await User.find_one(User.email == email)


async def iter_users() -> AsyncIterator[User]:
    """Every user, oldest id first (the admin CLI's `list-users`); streamed, not budgeted:
    it is no request's."""
    async for user in User.find_all().sort("_id"):
        yield user


@budgeted
async def set_password_hash(*, user_id: PydanticObjectId, hashed_password: str) -> None:
    """Replace a user's password hash (after an upgrade to the current algorithm)."""
    await User.find_one(User.id == user_id).update({"$set": {"hashed_password": hashed_password}})
    changed_here(USERS, user_id)


@budgeted
async def update_user(*, user_id: PydanticObjectId, changes: dict[str, Any]) -> User | None:
    """Set `changes` (names, email); Conflict if the new email is taken, None if no such user."""
    try:
        _, stored = await update_then_read(
            User.get_pymongo_collection(), {"_id": user_id}, {"$set": changes}
        )
    except DuplicateKeyError as exc:
        raise Conflict("Email already registered.") from exc
    changed_here(USERS, user_id)
    return None if stored is None else User.model_validate(stored)


@budgeted
async def in_transaction(steps: TransactionSteps[None]) -> None:
    """Run `steps` in one transaction where the server has them (a replica set or mongos);
    on a standalone server, run them one by one with no session: their order must then leave
    a consistent state wherever they stop (core/transactions.py)."""
    await transactions.in_transaction(User.get_pymongo_collection().database, steps)


@budgeted
async def delete_user(*, user_id: PydanticObjectId, session: AsyncClientSession | None) -> None:
    """Delete the user document (only: see service.delete_everything_of)."""
    await User.get_pymongo_collection().delete_many({"_id": user_id}, session=session)
    changed_here(USERS, user_id)


@budgeted
async def delete_sessions_of(
    *, user_id: PydanticObjectId, session: AsyncClientSession | None
) -> None:
    """Delete every session of the user, active or not."""
    await Session.get_pymongo_collection().delete_many({"user_id": user_id}, session=session)
    changed_here(USERS, user_id)


# A revoked session is kept this long at most (for reuse detection to answer 401 quietly,
# and for logs), then the TTL index removes it.
REVOKED_SESSION_KEPT = timedelta(days=1)

NEWEST_FIRST = [("created_at", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)]


def _active(now: datetime) -> dict[str, Any]:
    return {"revoked": False, "expires_at": {"$gt": now}}


def _revoke(now: datetime) -> dict[str, Any]:
    return {
        "$set": {"revoked": True, "revoked_at": now},
        "$min": {"expires_at": now + REVOKED_SESSION_KEPT},
    }


@budgeted
async def create_session(
    *,
    session_id: str,
    user_id: PydanticObjectId,
    refresh_hash: str,
    user_agent: str,
    ip: str,
    now: datetime,
    lifetime: timedelta,
) -> Session:
    """Store a new session; user agent and IP are cut to their stored maximum lengths."""
    session = Session(
        id=session_id,
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        expires_at=now + lifetime,
        refresh_hash=refresh_hash,
        user_agent=user_agent[:USER_AGENT_MAX_LENGTH],
        ip=ip[:IP_MAX_LENGTH],
    )
    await session.insert()
    return session


@budgeted
async def revoke_oldest_sessions(*, user_id: PydanticObjectId, keep: int, now: datetime) -> None:
    """Revoke the user's active sessions beyond the newest `keep`."""
    collection = Session.get_pymongo_collection()
    beyond = (
        await collection.find({"user_id": user_id, **_active(now)}, {"_id": 1})
        .sort(NEWEST_FIRST)
        .skip(keep)
        .to_list(None)
    )
    if beyond:
        revoked = [doc["_id"] for doc in beyond]
        await collection.update_many({"_id": {"$in": revoked}, "revoked": False}, _revoke(now))
        changed_here(SESSIONS, *revoked)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The current user and the session their access token belongs to; with a `Join`, the
    documents it read along (raw)."""

    user: User
    session_id: str
    joined: list[dict[str, Any]] = field(default_factory=list)
    # When the session ends (its refresh cap), for a cached copy to check on every use.
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Documents of another feature read with the session in the same round trip: those of
    `collection` whose `foreign_field` is the user's id (a member's memberships, say).
    `refers` names, as (field, collection), the other documents each one is about (a
    membership's list): a write to one of those (a list's memberships ended) names them in
    core.watch.changed_here."""

    collection: str
    foreign_field: str
    refers: tuple[tuple[str, str], ...] = ()

    def lookup(self, into: str) -> dict[str, Any]:
        """The $lookup stage that reads them (by the session's user_id) into `into`."""
        return {
            "$lookup": {
                "from": self.collection,
                "localField": "user_id",
                "foreignField": self.foreign_field,
                "as": into,
            }
        }


@budgeted
async def authenticate(
    *, session_id: str, user_id: PydanticObjectId, now: datetime, join: Join | None = None
) -> Authenticated | None:
    """The user, if their session is active: one round trip, two reads by primary key (and
    with `join`, a read of an index by the user's id)."""
    pipeline: list[dict[str, Any]] = [
        {"$match": {"_id": session_id, "user_id": user_id, **_active(now)}},
        {"$limit": 1},
        {"$lookup": {"from": "users", "localField": "user_id", "foreignField": "_id", "as": "u"}},
    ]
    if join is not None:
        pipeline.append(join.lookup("j"))
    found = await Session.aggregate(pipeline).to_list(1)
    if not found or not found[0]["u"]:
        return None
    return Authenticated(
        user=User.model_validate(found[0]["u"][0]),
        session_id=session_id,
        joined=found[0].get("j", []),
        expires_at=found[0]["expires_at"],
    )


class RefreshOutcome(enum.Enum):
    ROTATED = "rotated"
    # An unknown, expired or revoked session, or a token this session never issued (or one
    # rotated away longer ago than it remembers).
    INVALID = "invalid"
    RACED = "raced"  # the token just replaced, within the grace window: nothing revoked
    REUSED = "reused"  # an older token it issued: theft assumed, the session is now revoked


@dataclass(frozen=True, slots=True)
class RefreshResult:
    outcome: RefreshOutcome
    session: Session | None = None


@budgeted
async def rotate_refresh_token(
    *,
    session_id: str,
    presented_hash: str,
    new_hash: str,
    now: datetime,
    grace: timedelta,
) -> RefreshResult:
    """Swap the session's refresh hash for `new_hash` if `presented_hash` is the current one.

    The swap is one update with the current hash in its filter, so of two refreshes with one
    token exactly one succeeds.
    """
    collection = Session.get_pymongo_collection()
    swapped, found = await update_then_read(
        collection,
        {"_id": session_id, "refresh_hash": presented_hash, **_active(now)},
        {
            "$set": {"refresh_hash": new_hash, "rotated_at": now, "last_used_at": now},
            "$push": {
                "previous_hashes": {"$each": [presented_hash], "$slice": -REFRESH_HASHES_KEPT}
            },
        },
    )
    stored = None if found is None else Session.model_validate(found)
    if swapped and stored is not None:
        return RefreshResult(RefreshOutcome.ROTATED, stored)
    if stored is None or stored.revoked or stored.expires_at <= now:
        return RefreshResult(RefreshOutcome.INVALID)
    if presented_hash not in stored.previous_hashes:
        # Not a token this session issued: made up by someone who knows (or guessed) its id.
        return RefreshResult(RefreshOutcome.INVALID)
    if (
        grace > timedelta(0)
        and stored.previous_hashes[-1] == presented_hash
        and stored.rotated_at is not None
        and now - stored.rotated_at <= grace
    ):
        return RefreshResult(RefreshOutcome.RACED)
    # A token this session has already rotated away: whoever holds it (the thief or the
    # user) can't be told apart, so the session ends.
    await collection.update_one({"_id": session_id, "revoked": False}, _revoke(now))
    changed_here(SESSIONS, session_id)
    return RefreshResult(RefreshOutcome.REUSED)


@budgeted
async def list_active_sessions(
    *, user_id: PydanticObjectId, now: datetime, limit: int
) -> list[Session]:
    """The user's active sessions, newest first."""
    return (
        await Session.find({"user_id": user_id, **_active(now)})
        .sort(*NEWEST_FIRST)
        .limit(limit)
        .to_list()
    )


@budgeted
async def revoke_session(*, user_id: PydanticObjectId, session_id: str, now: datetime) -> bool:
    """Revoke one of the user's sessions; False if they have no such session."""
    result = await Session.get_pymongo_collection().update_one(
        {"_id": session_id, "user_id": user_id}, _revoke(now)
    )
    changed_here(SESSIONS, session_id)
    return result.matched_count == 1


@budgeted
async def revoke_all_sessions(*, user_id: PydanticObjectId, now: datetime) -> int:
    """Revoke every active session of the user; how many there were."""
    result = await Session.get_pymongo_collection().update_many(
        {"user_id": user_id, "revoked": False}, _revoke(now)
    )
    changed_here(USERS, user_id)
    return result.modified_count


@budgeted
async def delete_legacy_sessions() -> int:
    """Delete sessions stored under an ObjectId (before ids were random); how many.

    Their tokens can't be used any more (their ids don't have a session id's shape): their
    users log in again. Cheap once they are gone.
    """
    result = await Session.get_pymongo_collection().delete_many({"_id": {"$type": "objectId"}})
    return result.deleted_count
