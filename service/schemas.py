"""API schemas: what goes over the wire, kept apart from the stored documents."""

from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
)

from service.models import Todo, User, id_of

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
NAME_MAX_LENGTH = 100
TODO_TEXT_MAX_LENGTH = 1000
EMAIL_MAX_LENGTH = 254


def _as_utc(value: datetime) -> datetime:
    # MongoDB stores UTC without an offset; say so explicitly on the way out.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Email = Annotated[
    EmailStr,
    Field(
        max_length=EMAIL_MAX_LENGTH,
        # email-validator's rules go beyond JSON Schema's "format: email"; say so.
        description="An address that could receive mail: special-use and reserved domains "
        "(such as .test, .local, .invalid) and other undeliverable forms are refused with 422.",
    ),
    AfterValidator(lambda v: v.lower()),
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


class TodoCreate(InputModel):
    text: TodoText
    completed: bool = False


class TodoReplace(InputModel):
    text: TodoText
    completed: bool


class TodoUpdate(InputModel):
    """A partial update: only the fields sent change. `null` is not a value for any of them."""

    # Typed without None and defaulted through Field (defaults aren't validated), so the
    # schema says "optional, but never null"; read it with model_dump(exclude_unset=True).
    text: TodoText = Field(default=None)  # type: ignore[assignment]  # None = not sent
    completed: bool = Field(default=None)  # type: ignore[assignment]  # None = not sent


class TodoPublic(BaseModel):
    id: str
    text: str
    completed: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def from_document(cls, todo: Todo) -> Self:
        return cls(
            id=str(id_of(todo)),
            text=todo.text,
            completed=todo.completed,
            created_at=todo.created_at,
            updated_at=todo.updated_at,
        )


class TodoPage(BaseModel):
    items: list[TodoPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorDetail(BaseModel):
    detail: str | list[dict[str, object]]


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"


class NotReadyStatus(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    detail: str = Field(description="Why the service is not ready.")
