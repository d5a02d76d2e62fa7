"""Beanie documents: what is stored in MongoDB."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, truncated to MongoDB's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# What stored timestamps are taken from; injectable, so that tests move time instead of sleeping.
Clock = Callable[[], datetime]


def as_utc(value: datetime) -> datetime:
    """`value` as aware UTC: a client without tz_aware (or mongomock) returns naive UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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


USER_AGENT_MAX_LENGTH = 256
IP_MAX_LENGTH = 45  # the longest textual IPv6 address


class Session(Document):
    """One login: its refresh token (as a SHA-256 hash) and whether it still counts."""

    user_id: PydanticObjectId
    created_at: datetime
    last_used_at: datetime
    # Absolute: refreshing never moves it. The TTL index removes the document after it.
    expires_at: datetime
    revoked: bool = False
    revoked_at: datetime | None = None
    refresh_hash: str
    # The hash the last rotation replaced and when: tells two tabs refreshing at once
    # (within the grace window) from a stolen token being replayed.
    previous_hash: str | None = None
    rotated_at: datetime | None = None
    user_agent: Annotated[str, Field(max_length=USER_AGENT_MAX_LENGTH)] = ""
    ip: Annotated[str, Field(max_length=IP_MAX_LENGTH)] = ""

    class Settings:
        name = "sessions"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            # "my sessions, newest first", logout-all and account deletion.
            pymongo.IndexModel(
                [("user_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)],
                name="user_newest_first",
            ),
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]


class ThrottleCounter(Document):
    """Attempts counted for one key (a hashed email or IP) in a fixed window."""

    # sha256 of "<kind>:<subject>", so that mistyped emails aren't stored in clear.
    id: str  # type: ignore[assignment]  # a string key instead of an ObjectId
    kind: str
    hits: int
    window_start: datetime
    # The window's end: hits stop counting then; the TTL index removes the document later.
    expires_at: datetime

    class Settings:
        name = "throttle_counters"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]
