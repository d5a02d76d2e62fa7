"""API schemas: what goes over the wire, kept apart from the stored documents."""

import functools
import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from service.models import (
    DUE_DATE_PATTERN,
    DUE_DATETIME_PATTERN,
    INSTANT_RANGE,
    TODO_DEFAULTS,
    Session,
    StoredTodo,
    Todo,
    User,
    due_instant,
    id_of,
    parse_instant,
)
from service.security import REFRESH_TOKEN_MAX_LENGTH

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
NAME_MAX_LENGTH = 100
TODO_TEXT_MAX_LENGTH = 1000
EMAIL_MAX_LENGTH = 254
TODO_NOTES_MAX_LENGTH = 8192
TAG_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
# At most this many sent (so the schema's maxItems is the whole rule), duplicates merged.
MAX_TAGS = 20
PRIORITY_MAX = 3
DUE_MAX_LENGTH = 40
SEARCH_MAX_LENGTH = 200


def _as_utc(value: datetime) -> datetime:
    # MongoDB stores UTC without an offset; say so explicitly on the way out.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


# ---- Email addresses ----
# The rule is the pattern below, stated in the schema and checked as such; nothing else is
# refused. An address is `local@domain`: the local part is dot-separated runs of letters,
# digits and ``!#$%&'*+/=?^_`{|}~-``; the domain is two or more dot-separated labels of
# letters, digits and inner hyphens, the last one two letters or more. Letters are those whose
# normal form (below) is Latin, Greek or Cyrillic letters, and the local part, like each
# domain label, keeps to one of those scripts: `paypal` with a Cyrillic er (U+0440) for its
# `p` is refused. Special-use domains (.test, .example, .invalid, ...) are accepted: the service
# sends no mail. No `format: email`: the pattern is the whole rule.
EMAIL_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")
_EMAIL_SPECIALS = "!#$%&'*+/=?^_`{|}~-"
# Where letters whose normal form is Latin, Greek or Cyrillic live (scanning only these
# blocks takes a tenth of a second less than the whole BMP; a test checks nothing is missed).
EMAIL_LETTER_BLOCKS = ((0x41, 0x2FFF), (0xA640, 0xABFF), (0xFB00, 0xFB4F), (0xFF00, 0xFFEF))
EMAIL_DESCRIPTION = (
    f"At most {EMAIL_MAX_LENGTH} characters: `local@domain`, as the pattern says. The local "
    "part is dot-separated runs of letters, digits and ``!#$%&'*+/=?^_`{|}~-``; the domain is "
    "two or more dot-separated labels of letters, digits and inner hyphens, the last one two "
    "letters or more. Letters are Latin, Greek or Cyrillic, and the local part and "
    "each domain label keep to one script (`paypal` spelt with a Cyrillic `\u0440` for its `p` "
    "is refused). Special-use domains such as `.test` are accepted. Stored in Unicode NFKC, then "
    "lower-case."
)


def normalise_email(value: str) -> str:
    """The one form an email is stored, looked up and throttled by: NFKC, then lower-case."""
    return unicodedata.normalize("NFKC", value).lower()


def letter_script(char: str) -> str | None:
    """LATIN, GREEK or CYRILLIC for a letter of that script (by its Unicode name), else None."""
    if not unicodedata.category(char).startswith("L"):
        return None
    script = unicodedata.name(char, "").split(" ", 1)[0]
    return script if script in EMAIL_SCRIPTS else None


def _normal_script(char: str) -> str | None:
    """The one script of a letter's normal form (fullwidth `p`, long `s`: Latin), else None."""
    if not unicodedata.category(char).startswith("L"):
        return None
    scripts = {letter_script(c) for c in normalise_email(char)}
    return scripts.pop() if len(scripts) == 1 else None


def _char_class(codes: list[int]) -> str:
    """The inside of a regex character class for these code points, as ranges."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in ranges
    )


@functools.cache
def email_letters() -> dict[str, list[int]]:
    """Per script, the code points admitted as its letters (computed once, on first use)."""
    letters: dict[str, list[int]] = {script: [] for script in EMAIL_SCRIPTS}
    for low, high in EMAIL_LETTER_BLOCKS:
        for code in range(low, high + 1):
            if script := _normal_script(chr(code)):
                letters[script].append(code)
    return letters


@functools.cache
def email_pattern() -> str:
    """The schema's pattern: one alternative per script, so that mixing can't match.

    A domain label of digits and hyphens only has an alternative of its own, and a script's
    label needs one of its letters: alternatives that overlapped would backtrack
    exponentially on a long domain that fails at its end. Runs are bounded (64 characters in
    the local part, 61 around a label's first letter), which also keeps the addresses a
    fuzzer draws from the pattern mostly within the length limit.
    """
    # Only what a class needs escaped (`^`, `-`): ECMA-262 with the `u` flag refuses `\\#`.
    specials = _EMAIL_SPECIALS.replace("^", "\\^").replace("-", "\\-")
    local_parts, labels, last_labels = [], ["[0-9](?:[0-9\\-]{0,61}[0-9])?"], []
    for codes in email_letters().values():
        letters = _char_class(codes)
        atom = f"[0-9{specials}{letters}]{{1,64}}"
        local_parts.append(f"{atom}(?:\\.{atom})*")
        # Digits and hyphens up to the first letter, then letters, digits and inner hyphens.
        labels.append(
            f"(?:[0-9][0-9\\-]{{0,61}})?[{letters}](?:[0-9{letters}\\-]{{0,61}}[0-9{letters}])?"
        )
        last_labels.append(f"[{letters}]{{2,63}}")
    local, label, last = ("|".join(options) for options in (local_parts, labels, last_labels))
    return f"^(?:{local})@(?:(?:{label})\\.)+(?:{last})$"


@functools.cache
def _email_regex() -> re.Pattern[str]:
    return re.compile(email_pattern())


def _mixed_scripts(value: str) -> str | None:
    """Why `value` mixes scripts (in its local part or a domain label), else None."""
    local, _, domain = normalise_email(value).rpartition("@")
    parts = [("the local part", local)] + [("the domain", label) for label in domain.split(".")]
    for where, part in parts:
        scripts = sorted({s for c in part if (s := letter_script(c))})
        if len(scripts) > 1:
            names = " and ".join(script.title() for script in scripts)
            return f"{where} mixes {names} letters; use letters of one script only"
    return None


def check_email(value: str) -> str:
    """The normal form of an address the pattern accepts; else ValueError saying why."""
    if _email_regex().fullmatch(value) is None:
        mixed = _mixed_scripts(value) if "@" in value else None
        raise ValueError(
            f"Not an accepted email address: {mixed or 'see the pattern and description'}"
        )
    return normalise_email(value)


def _email_json_schema(schema: dict[str, Any]) -> None:
    schema["pattern"] = email_pattern()


Email = Annotated[
    str,
    Field(
        max_length=EMAIL_MAX_LENGTH,
        description=EMAIL_DESCRIPTION,
        json_schema_extra=_email_json_schema,  # computed on first use, not at import
    ),
    AfterValidator(check_email),
]
# Text fields are trimmed after validation. The limits apply to the text as sent (so the
# schema states them exactly), and it must hold something besides white space. White space is
# spelt out (what Python's str.strip removes), because regex engines disagree on `\s`:
# ECMA-262 (JSON Schema's) doesn't count \x1c-\x1f, Python does.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _trim(value: str) -> str:
    return value.strip(WHITESPACE)


Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=NOT_BLANK,
        description=f"1 to {NAME_MAX_LENGTH} characters, not all white space; "
        "leading and trailing white space is removed.",
    ),
    AfterValidator(_trim),
]
# Passwords are taken exactly as sent (no stripping): spaces may be part of them.
Password = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        description=f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters.",
    ),
]
TodoText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TODO_TEXT_MAX_LENGTH,
        pattern=NOT_BLANK,
        description=f"1 to {TODO_TEXT_MAX_LENGTH} characters, not all white space; "
        "leading and trailing white space is removed.",
    ),
    AfterValidator(_trim),
]


TodoNotes = Annotated[
    str, Field(max_length=TODO_NOTES_MAX_LENGTH, description="Up to 8192 characters.")
]


def _integral(value: object) -> object:
    # JSON Schema counts 2.0 as an integer: take it as 2 (strict mode refuses floats otherwise;
    # 2.5, a string or true still fail).
    return int(value) if type(value) is float and value.is_integer() else value


# The constraints come before the validator, so that the schema states them (after it, pydantic
# can't fold them into the integer's schema and writes non-standard `ge`/`le` keys).
Priority = Annotated[
    int,
    Field(ge=0, le=PRIORITY_MAX, description="0 (none) to 3 (highest)."),
    BeforeValidator(_integral),
]
Tag = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]


def _distinct_lower_tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tag.lower() for tag in tags))


Tags = Annotated[
    list[Tag],
    Field(
        max_length=MAX_TAGS,
        description=(
            f"Up to {MAX_TAGS} tags of 1 to 32 letters, digits, `-` or `_`; "
            "stored lower-case, duplicates merged."
        ),
    ),
    AfterValidator(_distinct_lower_tags),
]


def check_due(value: str) -> str:
    """`value` if it is a valid due (an ISO date or a datetime with an offset), else ValueError."""
    due_instant(value)  # raises ValueError for anything else
    return value


# What a due (or a due filter) may be, in words; the pattern says the same exactly.
DUE_RULES = (
    "An ISO calendar date (`2026-12-01`, years 0001-9999) or a datetime with an offset "
    "(`2026-12-01T09:00:00+02:00`, `...Z`; hours 00-23, seconds 00-59, up to 6 fractional "
    f"digits, offsets up to ±23:59) that is an instant from {INSTANT_RANGE}: on "
    "0001-01-01 and 9999-12-31 a datetime must be UTC (`Z` or `+00:00`). Anything else is a 422."
)
# The pattern is documented but checked by check_due, so that a 422 says what a due is rather
# than repeating the pattern.
DUE_SCHEMA_PATTERN = f"{DUE_DATE_PATTERN}|{DUE_DATETIME_PATTERN}"

Due = Annotated[
    str,
    Field(
        max_length=DUE_MAX_LENGTH,
        description=f"{DUE_RULES} Returned exactly as sent.",
        json_schema_extra={"pattern": DUE_SCHEMA_PATTERN},
    ),
    AfterValidator(check_due),
]


def _instant(value: object) -> datetime:
    if not isinstance(value, str) or len(value) > DUE_MAX_LENGTH:
        raise ValueError(f"must be a datetime with an offset, an instant from {INSTANT_RANGE}")
    return parse_instant(value)


# A datetime with an offset, as a query parameter takes it: the same rules as a due datetime
# (not pydantic's wider datetime parsing, which also takes Unix times and other separators).
Instant = Annotated[
    datetime,
    PlainValidator(_instant),
    WithJsonSchema(
        {
            # No `format: date-time`: RFC 3339 needs seconds, which a due datetime may omit.
            "type": "string",
            "maxLength": DUE_MAX_LENGTH,
            "pattern": DUE_DATETIME_PATTERN,
        }
    ),
]


class InputModel(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped.

    Strict: a body says `true`, not `1` or `"yes"` (lax coercion would accept input the
    OpenAPI schema calls invalid).
    """

    # python-re: patterns mean what Python's `re` (and so str.strip) means by white space.
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class UserCreate(InputModel):
    email: Email
    fname: Name
    lname: Name
    password: Password


class UserPublic(BaseModel):
    id: str
    email: str
    fname: str
    lname: str
    created_at: UtcDatetime

    @classmethod
    def from_document(cls, user: User) -> Self:
        return cls(
            id=str(id_of(user)),
            email=user.email,
            fname=user.fname,
            lname=user.lname,
            created_at=user.created_at,
        )


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 -- the OAuth2 token type, no secret
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(
        description="Opaque; exchange it at `POST /api/token/refresh` for a new pair. "
        "Each one works once."
    )


class TodoCreate(InputModel):
    text: TodoText
    notes: TodoNotes = ""
    completed: bool = False
    due: Due | None = None
    priority: Priority = 0
    tags: Tags = Field(default_factory=list)


class TodoReplace(TodoCreate):
    """Every writable field: `text` and `completed` are required, the others reset to defaults."""

    completed: bool


class TodoUpdate(InputModel):
    """A partial update: only the fields sent change. `null` is a value only for `due`."""

    # Typed without None and defaulted through Field (defaults aren't validated), so the
    # schema says "optional, but never null"; read it with model_dump(exclude_unset=True).
    text: TodoText = Field(default=None)  # type: ignore[assignment]  # None = not sent
    completed: bool = Field(default=None)  # type: ignore[assignment]  # None = not sent
    notes: TodoNotes = Field(default=None)  # type: ignore[assignment]  # None = not sent
    priority: Priority = Field(default=None)  # type: ignore[assignment]  # None = not sent
    tags: Tags = Field(default=None)  # type: ignore[arg-type]  # None = not sent
    # `null` clears the due.
    due: Due | None = None


class TodoPublic(BaseModel):
    id: str
    text: str
    notes: str
    completed: bool
    completed_at: UtcDatetime | None
    due: str | None
    priority: int
    tags: list[str]
    created_at: UtcDatetime
    updated_at: UtcDatetime
    version: int

    @classmethod
    def from_document(cls, todo: Todo) -> Self:
        return cls.from_stored(todo.model_dump(by_alias=True))

    @classmethod
    def from_stored(cls, stored: StoredTodo) -> Self:
        return cls.model_validate(_todo_fields(stored))


def _todo_fields(stored: StoredTodo) -> dict[str, Any]:
    """A stored todo's fields (defaults for those it lacks) with its id as the API's `id`."""
    return {**TODO_DEFAULTS, **stored, "id": str(stored["_id"])}


class TodoPage(BaseModel):
    items: list[TodoPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class TodoTombstone(BaseModel):
    """A deleted todo, as delta sync and the change feed report it."""

    id: str
    deleted: Literal[True] = True
    deleted_at: UtcDatetime
    version: int

    @classmethod
    def from_stored(cls, stored: StoredTodo) -> Self:
        if stored.get("deleted_at") is None:
            raise ValueError("not a tombstone")
        return cls.model_validate(_todo_fields(stored))


def todo_or_tombstone(stored: StoredTodo) -> "TodoPublic | TodoTombstone":
    """How a stored todo is reported in change listings: a tombstone once deleted."""
    if stored.get("deleted_at") is not None:
        return TodoTombstone.from_stored(stored)
    return TodoPublic.from_stored(stored)


class TodoChanges(BaseModel):
    """A delta-sync page: what changed after `updated_since`, up to `watermark`."""

    items: list[TodoPublic | TodoTombstone]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same query) for the rest of this answer."
    )
    watermark: UtcDatetime = Field(
        description=(
            "The answer is complete up to this instant: pass it as the next `updated_since`."
        )
    )


class ClearedTodos(BaseModel):
    deleted: int = Field(description="How many completed todos were deleted.")


class EventTicketOut(BaseModel):
    ticket: str = Field(description="Pass as `ticket` to GET /api/todos/events, once.")
    expires_in: int = Field(description="Seconds the ticket stays valid.")


class ReadyEventData(BaseModel):
    """The data of `event: ready`, the first event of every change feed stream."""

    resumed: bool = Field(
        description="True when the stream starts by catching up on changes after Last-Event-ID."
    )


class RevokedEventData(BaseModel):
    """The data of `event: revoked`, the last event of a stream whose session ended."""

    detail: str = Field(description="Why the stream ends: log in again to open a new one.")


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorDetail(BaseModel):
    detail: str | list[dict[str, object]]


# Checked against the stored hash, so only the length is limited: any password ever accepted
# must still be accepted here.
CurrentPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]


class RefreshRequest(InputModel):
    refresh_token: str = Field(min_length=1, max_length=REFRESH_TOKEN_MAX_LENGTH)


class UserUpdate(InputModel):
    """A partial update of your account; changing `email` needs `current_password` too."""

    # The schema says so too (dependentRequired), so that a body it allows is one we accept.
    model_config = ConfigDict(
        json_schema_extra={"dependentRequired": {"email": ["current_password"]}}
    )

    fname: Name = Field(default=None)  # type: ignore[assignment]  # None = not sent
    lname: Name = Field(default=None)  # type: ignore[assignment]  # None = not sent
    email: Email = Field(default=None)  # type: ignore[assignment]  # None = not sent
    current_password: CurrentPassword = Field(  # type: ignore[assignment]  # None = not sent
        default=None, description="Required when `email` is sent."
    )

    @model_validator(mode="after")
    def _email_needs_password(self) -> Self:
        if "email" in self.model_fields_set and self.current_password is None:
            raise ValueError("current_password is required to change the email")
        return self


class PasswordChange(InputModel):
    current_password: CurrentPassword
    new_password: Password


class AccountDeletion(InputModel):
    password: CurrentPassword


class SessionPublic(BaseModel):
    id: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime
    expires_at: UtcDatetime
    user_agent: str
    ip: str
    current: bool = Field(description="Whether this is the session of the token you sent.")

    @classmethod
    def from_document(cls, session: Session, *, current: bool) -> Self:
        return cls(
            id=str(id_of(session)),
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            user_agent=session.user_agent,
            ip=session.ip,
            current=current,
        )


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"


class NotReadyStatus(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    detail: str = Field(description="Why the service is not ready.")
