"""Beanie documents: what is stored in MongoDB."""

from datetime import UTC, datetime
from typing import Annotated, ClassVar

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, truncated to MongoDB's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def id_of(document: Document) -> PydanticObjectId:
    """The id of a document that was loaded from, or inserted into, the database."""
    if document.id is None:
        raise ValueError(f"{type(document).__name__} has not been stored yet")
    return document.id


class User(Document):
    email: Annotated[str, Indexed(unique=True)]
    fname: str
    lname: str
    hashed_password: str
    created_at: datetime = Field(default_factory=utc_now)
    # How many live todos the user has: kept by crud.todos so MAX_TODOS_PER_USER is atomic.
    todo_count: int = 0

    class Settings:
        name = "users"


class Todo(Document):
    owner_id: PydanticObjectId
    text: str
    completed: bool = False
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "todos"
        # (owner_id, _id desc) serves "my todos, newest first" and every lookup by owner,
        # so no separate owner_id index is needed.
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel(
                [("owner_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)],
                name="owner_newest_first",
            )
        ]
