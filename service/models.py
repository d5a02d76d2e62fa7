"""Beanie documents: what is stored in MongoDB."""

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING


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
    # How many live todos the user has: kept by crud.todos so MAX_TODOS_PER_USER is atomic.
    todo_count: int = 0

    class Settings:
        name = "users"


# A due value is either a calendar date or a datetime with an explicit offset (never naive).
# The patterns say exactly what is accepted (ASCII digits, real calendar days, leap years), so
# that any value matching the documented schema is taken: years 0001-9999, hours 00-23,
# minutes and seconds 00-59 (no leap second), at most 6 fractional digits, offsets up to
# +-23:59. Every datetime must also be an instant Python (and so MongoDB, here) can hold,
# 0001-01-01T00:00Z to 9999-12-31T23:59:59.999999Z: only a time on the first or last of those
# days could fall outside with an offset, so on those two days a datetime must be UTC.
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_INNER_YEAR = (
    "(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
)
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DAY_31 = "(?:0[1-9]|[12][0-9]|3[01])"
_DAY_30 = "(?:0[1-9]|[12][0-9]|30)"
_DAY_28 = "(?:0[1-9]|1[0-9]|2[0-8])"
# Month-day of any year (29 February apart), and the same without 1 January / 31 December.
_MONTH_DAY = f"(?:(?:0[13578]|1[02])-{_DAY_31}|(?:0[469]|11)-{_DAY_30}|02-{_DAY_28})"
_MONTH_DAY_NOT_JAN_1 = (
    f"(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[3578]|1[02])-{_DAY_31}|(?:0[469]|11)-{_DAY_30}"
    f"|02-{_DAY_28})"
)
_MONTH_DAY_NOT_DEC_31 = (
    f"(?:(?:0[13578]|10)-{_DAY_31}|12-{_DAY_30}|(?:0[469]|11)-{_DAY_30}|02-{_DAY_28})"
)
_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
# Every date but 0001-01-01 and 9999-12-31 (0001 and 9999 are not leap years).
_INNER_DATE = (
    f"(?:{_INNER_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29"
    f"|0001-{_MONTH_DAY_NOT_JAN_1}|9999-{_MONTH_DAY_NOT_DEC_31})"
)
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_UTC = "(?:Z|[+-]00:00)"
DUE_DATE_PATTERN = f"^{_DATE}$"
DUE_DATETIME_PATTERN = (
    f"^(?:{_INNER_DATE}T{_TIME}{_OFFSET}|(?:0001-01-01|9999-12-31)T{_TIME}{_UTC})$"
)
INSTANT_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
_DUE_DATE_RE = re.compile(DUE_DATE_PATTERN)
_DUE_DATETIME_RE = re.compile(DUE_DATETIME_PATTERN)


def as_utc_instant(value: datetime) -> datetime:
    """An aware `value` as UTC; ValueError if it is naive or its instant lies outside
    INSTANT_RANGE (what Python's datetime, and so pymongo, can represent)."""
    if value.tzinfo is None:
        raise ValueError("a datetime needs an offset")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"must be an instant from {INSTANT_RANGE}") from exc


def parse_instant(value: str) -> datetime:
    """The UTC instant of a datetime with an offset (DUE_DATETIME_PATTERN), else ValueError."""
    if not _DUE_DATETIME_RE.fullmatch(value):
        raise ValueError(
            "must be a datetime with an offset (2026-12-01T09:00:00+02:00), "
            f"an instant from {INSTANT_RANGE}"
        )
    return as_utc_instant(datetime.fromisoformat(value))


def due_instant(due: str) -> datetime:
    """The UTC instant a due value sorts and filters by; a date counts as its midnight UTC.

    Raises ValueError for anything but an ISO date or an ISO datetime with an offset (within
    the range above).
    """
    if _DUE_DATE_RE.fullmatch(due):
        day = date.fromisoformat(due)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if _DUE_DATETIME_RE.fullmatch(due):
        return as_utc_instant(datetime.fromisoformat(due))
    raise ValueError(
        "must be a calendar date (2026-12-01) or a datetime with an offset "
        f"(2026-12-01T09:00:00+02:00), an instant from {INSTANT_RANGE}"
    )


class Todo(Document):
    owner_id: PydanticObjectId
    text: str
    notes: str = ""
    completed: bool = False
    completed_at: datetime | None = None
    # `due` is kept exactly as the client sent it; `due_at` is its instant (for filters and
    # sorting) and `due_rank` is 1 when there is no due, so that "sort=due" puts those last
    # in both directions.
    due: str | None = None
    due_at: datetime | None = None
    due_rank: int = 1
    priority: int = 0
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    version: int = 1
    # Set when the todo is deleted: it stays as a tombstone for delta sync until a TTL index
    # removes it. Every normal read filters on deleted_at: null.
    deleted_at: datetime | None = None

    class Settings:
        name = "todos"
        # One index per listing order, each starting with the equality fields every listing
        # has (owner_id, and deleted_at: null for live todos); the README says which query each
        # serves (service/crud/todos.py SORT_INDEXES maps each listing order to its index).
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel(
                [("owner_id", ASC), ("deleted_at", ASC), ("_id", DESC)],
                name="todos_live_by_created",
            ),
            pymongo.IndexModel(
                [("owner_id", ASC), ("deleted_at", ASC), ("updated_at", DESC), ("_id", DESC)],
                name="todos_live_by_updated",
            ),
            pymongo.IndexModel(
                [
                    ("owner_id", ASC),
                    ("deleted_at", ASC),
                    ("due_rank", ASC),
                    ("due_at", ASC),
                    ("_id", ASC),
                ],
                name="todos_live_by_due",
            ),
            pymongo.IndexModel(
                [("owner_id", ASC), ("deleted_at", ASC), ("priority", DESC), ("_id", DESC)],
                name="todos_live_by_priority",
            ),
            # Delta sync with tombstones: everything the owner changed, in update order.
            pymongo.IndexModel(
                [("owner_id", ASC), ("updated_at", ASC), ("_id", ASC)], name="todos_sync"
            ),
        ]


# A stored todo as listings read it: the raw document, without a Todo built around it (that
# cost ~30% more CPU per page; bench/REPORT.md). A field it lacks reads as TODO_DEFAULTS's.
StoredTodo = Mapping[str, Any]
TODO_DEFAULTS: dict[str, Any] = {
    name: field.get_default(call_default_factory=True)
    for name, field in Todo.model_fields.items()
    if not field.is_required()
}


IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 60 * 60


class IdempotencyKey(Document):
    """A create made with an Idempotency-Key: what was asked, and the answer to replay."""

    owner_id: PydanticObjectId
    key: str
    request_hash: str
    # Chosen before the todo is inserted, so a retry after a crash can't create a second one.
    todo_id: PydanticObjectId
    status_code: int | None = None
    response_body: dict[str, Any] | None = None
    location: str | None = None
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "idempotency_keys"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            # Keys are per user; the unique index is what makes parallel retries safe.
            pymongo.IndexModel(
                [("owner_id", ASC), ("key", ASC)], unique=True, name="idempotency_owner_key"
            ),
            # Sweeps expired keys (about once a minute); expiry is also checked on read.
            pymongo.IndexModel(
                [("created_at", ASC)],
                expireAfterSeconds=IDEMPOTENCY_KEY_TTL_SECONDS,
                name="idempotency_ttl",
            ),
        ]


# A session's id (random, see security.new_session_id), as tickets and the feed keep it.
SessionKey = str


class EventTicket(Document):
    """A one-time ticket that opens the change feed without an Authorization header."""

    # Only a hash is stored: the ticket itself is a bearer credential.
    ticket_hash: Annotated[str, Indexed(unique=True)]
    owner_id: PydanticObjectId
    # The session that asked for it: the ticket (and its stream) end with that session.
    session_id: SessionKey
    expires_at: datetime
    # When the access token that asked for the ticket expires; the stream closes then.
    stream_until: datetime

    class Settings:
        name = "event_tickets"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel(
                [("expires_at", ASC)], expireAfterSeconds=0, name="event_tickets_ttl"
            )
        ]


class FeedStreamSlot(Document):
    """One of a user's MAX_STREAMS_PER_USER open change-feed streams, leased by a worker."""

    id: str  # type: ignore[assignment]  # "<user id>:<slot number>" instead of an ObjectId
    # The worker serving the stream (it renews and frees its leases) and this lease's own id.
    worker: str
    lease: str
    # The slot is free again after this: a crashed worker's streams can't hold slots for long.
    expires_at: datetime

    class Settings:
        name = "feed_stream_slots"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel([("worker", ASC)], name="feed_stream_slots_worker"),
            pymongo.IndexModel(
                [("expires_at", ASC)], expireAfterSeconds=0, name="feed_stream_slots_ttl"
            ),
        ]


USER_AGENT_MAX_LENGTH = 256
IP_MAX_LENGTH = 45  # the longest textual IPv6 address


# How many replaced refresh token hashes a session keeps, for reuse detection: a token older
# than that many rotations is just invalid (it can't be told from a made-up one).
REFRESH_HASHES_KEPT = 32


class Session(Document):
    """One login: its refresh token (as a SHA-256 hash) and whether it still counts."""

    # Random (security.new_session_id), not an ObjectId: clients send it, and ObjectIds of
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
