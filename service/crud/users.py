"""Queries on users."""

from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from service.budget import budgeted
from service.crud import sessions
from service.db import supports_transactions
from service.exceptions import Conflict
from service.models import EventTicket, IdempotencyKey, Session, Todo, User


@budgeted
async def create_user(*, email: str, fname: str, lname: str, hashed_password: str) -> User:
    """Insert a user; Conflict if the (normalised) email is taken."""
    user = User(email=email, fname=fname, lname=lname, hashed_password=hashed_password)
    try:
        # The unique index decides: a check-then-insert would race with a parallel signup.
        await user.insert()
    except DuplicateKeyError as exc:
        raise Conflict("Email already registered.") from exc
    return user


@budgeted
async def get_user(*, user_id: PydanticObjectId) -> User | None:
    """The user with this id, if any."""
    return await User.get(user_id)


@budgeted
async def get_user_by_email(*, email: str) -> User | None:
    """The user with this (normalised: schemas.normalise_email) email, if any."""
    return await User.find_one(User.email == email)


@budgeted
async def set_password_hash(*, user_id: PydanticObjectId, hashed_password: str) -> None:
    """Replace a user's password hash (after an upgrade to the current algorithm)."""
    await User.find_one(User.id == user_id).update({"$set": {"hashed_password": hashed_password}})


@budgeted
async def update_user(*, user_id: PydanticObjectId, changes: dict[str, Any]) -> User | None:
    """Set `changes` (names, email); Conflict if the new email is taken, None if no such user."""
    try:
        # update_one and a read, not find_one_and_update: SecantusDB's findAndModify scans
        # the whole collection.
        await User.get_pymongo_collection().update_one({"_id": user_id}, {"$set": changes})
    except DuplicateKeyError as exc:
        raise Conflict("Email already registered.") from exc
    return await User.get(user_id)


@budgeted
async def change_password(
    *, user_id: PydanticObjectId, hashed_password: str, now: datetime
) -> None:
    """Store a new password hash, then revoke every session of the user."""
    await set_password_hash(user_id=user_id, hashed_password=hashed_password)
    await sessions.revoke_all_sessions(user_id=user_id, now=now)


@budgeted
async def delete_user(*, user_id: PydanticObjectId) -> None:
    """Delete the user with everything of theirs; in a transaction where the server has them.

    Sessions, event tickets, idempotency records (they hold a copy of each todo created with
    a key), todos, then the user. Without transactions (a standalone server), sessions go
    first, so the user's tokens stop working at once, and the user last, so an interrupted
    deletion leaves an account that can log in and delete itself again rather than todos
    nobody owns.
    """
    users = User.get_pymongo_collection()
    database = users.database
    steps = [
        (Session.get_pymongo_collection(), {"user_id": user_id}),
        (EventTicket.get_pymongo_collection(), {"owner_id": user_id}),
        (IdempotencyKey.get_pymongo_collection(), {"owner_id": user_id}),
        (Todo.get_pymongo_collection(), {"owner_id": user_id}),
        (users, {"_id": user_id}),
    ]
    if not await supports_transactions(database):
        for collection, query in steps:
            await collection.delete_many(query)
        return

    async def delete_all(session: AsyncClientSession) -> None:
        for collection, query in steps:
            await collection.delete_many(query, session=session)

    async with database.client.start_session() as session:
        await session.with_transaction(delete_all)
