"""Queries on users."""

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from service.budget import budgeted
from service.exceptions import Conflict
from service.models import User


@budgeted
async def create_user(*, email: str, fname: str, lname: str, hashed_password: str) -> User:
    """Insert a user; Conflict if the (lower-cased) email is taken."""
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
    """The user with this (lower-cased) email, if any."""
    return await User.find_one(User.email == email)


@budgeted
async def set_password_hash(*, user_id: PydanticObjectId, hashed_password: str) -> None:
    """Replace a user's password hash (after an upgrade to the current algorithm)."""
    await User.find_one(User.id == user_id).update({"$set": {"hashed_password": hashed_password}})
