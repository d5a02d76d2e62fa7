"""Every database query the service makes. Todo queries always filter on owner_id."""

from typing import Any

from beanie import PydanticObjectId
from beanie.odm.enums import SortDirection
from beanie.odm.queries.update import UpdateResponse
from pymongo.errors import DuplicateKeyError

from service.exceptions import Conflict
from service.models import Todo, User, utc_now

# ---- users ----


async def create_user(*, email: str, fname: str, lname: str, hashed_password: str) -> User:
    """Insert a user; Conflict if the (lower-cased) email is taken."""
    user = User(email=email, fname=fname, lname=lname, hashed_password=hashed_password)
    try:
        # The unique index decides: a check-then-insert would race with a parallel signup.
        await user.insert()
    except DuplicateKeyError as exc:
        raise Conflict("Email already registered.") from exc
    return user


async def get_user(*, user_id: PydanticObjectId) -> User | None:
    """The user with this id, if any."""
    return await User.get(user_id)


async def get_user_by_email(*, email: str) -> User | None:
    """The user with this (lower-cased) email, if any."""
    return await User.find_one(User.email == email)


async def set_password_hash(*, user_id: PydanticObjectId, hashed_password: str) -> None:
    """Replace a user's password hash (after an upgrade to the current algorithm)."""
    await User.find_one(User.id == user_id).update({"$set": {"hashed_password": hashed_password}})


# ---- todos ----


async def create_todo(*, owner_id: PydanticObjectId, text: str, completed: bool) -> Todo:
    """Insert a todo owned by owner_id."""
    todo = Todo(owner_id=owner_id, text=text, completed=completed)
    await todo.insert()
    return todo


async def list_todos(
    *, owner_id: PydanticObjectId, limit: int, before: PydanticObjectId | None = None
) -> list[Todo]:
    """Up to `limit` of the owner's todos, newest first, older than `before` if given."""
    query: dict[str, Any] = {"owner_id": owner_id}
    if before is not None:
        query["_id"] = {"$lt": before}
    return await Todo.find(query).sort(("_id", SortDirection.DESCENDING)).limit(limit).to_list()


async def get_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> Todo | None:
    """The owner's todo with this id; None for anyone else's."""
    return await Todo.find_one({"_id": todo_id, "owner_id": owner_id})


async def update_todo(
    *, owner_id: PydanticObjectId, todo_id: PydanticObjectId, changes: dict[str, Any]
) -> Todo | None:
    """Set `changes` on the owner's todo in one atomic update; None if there's no such todo."""
    updated = await Todo.find_one({"_id": todo_id, "owner_id": owner_id}).update(
        {"$set": {**changes, "updated_at": utc_now()}},
        response_type=UpdateResponse.NEW_DOCUMENT,
    )
    return updated if isinstance(updated, Todo) else None


async def delete_todo(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> bool:
    """Delete the owner's todo; False if there was none."""
    result = await Todo.find_one({"_id": todo_id, "owner_id": owner_id}).delete()
    return result is not None and result.deleted_count == 1
