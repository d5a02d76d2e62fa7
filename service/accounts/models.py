"""Beanie documents of accounts: users, sessions, throttle counters."""

from datetime import datetime
from typing import Annotated, ClassVar

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

from service.core.clock import utc_now

ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING


class User(Document):
    email: Annotated[str, Indexed(unique=True)]
    fname: str
    lname: str
    hashed_password: str
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "users"


USER_AGENT_MAX_LENGTH = 256
IP_MAX_LENGTH = 45  # the longest textual IPv6 address


# How many replaced refresh token hashes a session keeps, for reuse detection: a token older
# than that many rotations is just invalid (it can't be told from a made-up one).
REFRESH_HASHES_KEPT = 32


class Session(Document):
    """One login: its refresh token (as a SHA-256 hash) and whether it still counts."""

    # Random (tokens.new_session_id), not an ObjectId: clients send it, and ObjectIds of
    # other people's sessions could be guessed from ids created around them.
    id: str  # type: ignore[assignment]  # a string key instead of an ObjectId
    user_id: PydanticObjectId
    created_at: datetime
    last_used_at: datetime
    # The TTL index removes the document after it. Absolute from login (refreshing never
    # moves it); revoking brings it forward to at most a day later.
    expires_at: datetime
    revoked: bool = False
    revoked_at: datetime | None = None
    refresh_hash: str
    # The hashes rotations replaced, oldest first, at most REFRESH_HASHES_KEPT: one of them
    # presented again means the token was copied (the session is revoked), except the last
    # within the grace window after `rotated_at` (two tabs refreshing at once).
    previous_hashes: list[str] = Field(default_factory=list)
    rotated_at: datetime | None = None
    user_agent: Annotated[str, Field(max_length=USER_AGENT_MAX_LENGTH)] = ""
    ip: Annotated[str, Field(max_length=IP_MAX_LENGTH)] = ""

    class Settings:
        name = "sessions"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            # "my sessions, newest first", the session cap, logout-all and account deletion.
            # (Ids are random, so creation time orders them; the id only breaks ties.)
            pymongo.IndexModel(
                [("user_id", ASC), ("created_at", DESC), ("_id", DESC)],
                name="sessions_user_newest_first",
            ),
            pymongo.IndexModel([("expires_at", ASC)], expireAfterSeconds=0),
        ]


class ThrottleCounter(Document):
    """Attempts counted for one key (a hashed email or IP): in a fixed window (`hits` since
    `window_start`), or in a rolling one (`sent`: when each counted attempt was made)."""

    # sha256 of "<kind>:<subject>", so that mistyped emails aren't stored in clear.
    id: str  # type: ignore[assignment]  # a string key instead of an ObjectId
    kind: str
    hits: int = 0
    window_start: datetime | None = None
    # Rolling windows only (counters.reserve_rolling): the instants of the attempts counted,
    # at most the limit of them; those older than the window no longer count.
    sent: list[datetime] = Field(default_factory=list)
    # A fixed window's end: hits stop counting then. A rolling window's: its newest attempt
    # plus the window. The TTL index removes the document later.
    expires_at: datetime

    class Settings:
        name = "throttle_counters"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]
