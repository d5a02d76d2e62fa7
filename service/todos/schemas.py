"""What todos send and receive over the wire."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from beanie import PydanticObjectId
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

from service.core.pagination import CURSOR_PATTERN
from service.core.schemas import NOT_BLANK, InputModel, UtcDatetime, trim
from service.todos.dates import (
    DUE_DATE_PATTERN,
    DUE_DATETIME_PATTERN,
    INSTANT_RANGE,
    due_instant,
    parse_instant,
)
from service.todos.models import TODO_DEFAULTS, StoredTodo

OBJECT_ID_PATTERN = r"^[0-9a-fA-F]{24}$"
TODO_TEXT_MAX_LENGTH = 1000
TODO_NOTES_MAX_LENGTH = 8192
TAG_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
# At most this many sent (so the schema's maxItems is the whole rule), duplicates merged.
MAX_TAGS = 20
PRIORITY_MAX = 3
DUE_MAX_LENGTH = 40
SEARCH_MAX_LENGTH = 200


TodoText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TODO_TEXT_MAX_LENGTH,
        pattern=NOT_BLANK,
        description=f"1 to {TODO_TEXT_MAX_LENGTH} characters, not all white space; "
        "leading and trailing white space is removed.",
    ),
    AfterValidator(trim),
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


# A list's id as a body field or a query parameter takes it; turned into an ObjectId by the
# route (PydanticObjectId would take other shapes than the schema states).
ListId = Annotated[str, Field(pattern=OBJECT_ID_PATTERN, description="A list's id.")]


class TodoSort(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DUE = "due"
    PRIORITY = "priority"


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


DueBound = Annotated[Due | None, Field(description=f"{DUE_RULES} A date means its midnight UTC.")]
# The pattern is documented but checked by decode_cursor, so that a bad cursor is a 400 like
# any other unusable cursor, not a 422.
Cursor = Annotated[str, Field(json_schema_extra={"pattern": CURSOR_PATTERN})]


class TodoQuery(BaseModel):
    """The query of GET /api/todos: a page of a filtered, sorted listing, or delta sync.

    Not an InputModel: query strings are text to coerce (`true`, `5`), and unknown query
    parameters are ignored, as they are for every other route.
    """

    list_id: Annotated[
        ListId | None,
        Field(
            description=(
                "Only this list's todos (404 if you aren't a member); "
                "default: every list you can read."
            )
        ),
    ] = None
    completed: Annotated[bool | None, Field(description="Only completed (or open) todos.")] = None
    tag: Annotated[
        list[Tag] | None,
        Field(
            max_length=MAX_TAGS, description="Only todos with this tag; repeat for all of several."
        ),
    ] = None
    q: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=SEARCH_MAX_LENGTH,
            description="Case-insensitive substring of text or notes, taken literally.",
        ),
    ] = None
    due_before: DueBound = None
    due_after: DueBound = None
    priority: Annotated[int | None, Field(ge=0, le=PRIORITY_MAX)] = None
    sort: Annotated[TodoSort | None, Field(description="Default `created`.")] = None
    order: Annotated[SortOrder | None, Field(description="Default `desc`.")] = None
    updated_since: Annotated[
        Instant | None,
        Field(
            description=(
                "Delta sync: only todos changed after this instant, in update order, "
                "up to the answer's `watermark`. A datetime with an offset, as for `due`."
            )
        ),
    ] = None
    include_deleted: Annotated[
        bool, Field(description="With `updated_since`: also report deleted todos.")
    ] = False
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[
        Cursor | None,
        Field(
            description=(
                "`next_cursor` of the previous page; only valid with the same filters and sort."
            ),
        ),
    ] = None


class TodoCreate(InputModel):
    # Not a todo field: which list to create it in (editor or owner of it).
    list_id: Annotated[
        ListId | None, Field(description="The list to add it to; default: your default list.")
    ] = None
    text: TodoText
    notes: TodoNotes = ""
    completed: bool = False
    due: Due | None = None
    priority: Priority = 0
    tags: Tags = Field(default_factory=list)


# What a PUT or PATCH says of `list_id`.
MOVE_TO = (
    "Move the todo to this list (editor or owner of both lists; 404 for a list you aren't a "
    "member of, 403 if only a viewer of it, 409 if it is full)."
)


class TodoReplace(TodoCreate):
    """Every writable field: `text` and `completed` are required, the others reset to defaults.

    `list_id` is where the todo is, not a field that resets: without it the todo stays in its
    list.
    """

    list_id: Annotated[
        ListId | None, Field(description=f"{MOVE_TO} Without it the todo stays where it is.")
    ] = None
    completed: bool


def _not_sent() -> Any:
    """The value of a TodoUpdate field the request didn't send (model_dump skips it)."""
    return None


class TodoUpdate(InputModel):
    """A partial update: only the fields sent change. `null` is a value only for `due`."""

    # Typed without None and defaulted by a factory (defaults aren't validated, and a factory's
    # isn't typed against the field), so the schema says "optional, but never null"; read it
    # with model_dump(exclude_unset=True).
    text: TodoText = Field(default_factory=_not_sent)
    completed: bool = Field(default_factory=_not_sent)
    notes: TodoNotes = Field(default_factory=_not_sent)
    priority: Priority = Field(default_factory=_not_sent)
    tags: Tags = Field(default_factory=_not_sent)
    list_id: Annotated[ListId, Field(description=MOVE_TO)] = Field(default_factory=_not_sent)
    # `null` clears the due.
    due: Due | None = None


class TodoPublic(BaseModel):
    id: str
    list_id: str = Field(description="The list the todo is in.")
    created_by: str = Field(description="The id of the user who created it; never changes.")
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
    def from_stored(cls, stored: StoredTodo) -> Self:
        return cls.model_validate(_todo_fields(stored))


def _todo_fields(stored: StoredTodo) -> dict[str, Any]:
    """A stored todo's fields (defaults for those it lacks) with its ids as strings."""
    return {
        **TODO_DEFAULTS,
        **stored,
        "id": str(stored["_id"]),
        "list_id": str(stored["list_id"]),
        "created_by": str(stored["created_by"]),
    }


class TodoPage(BaseModel):
    items: list[TodoPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class TodoTombstone(BaseModel):
    """A todo that left your view: deleted, or moved to a list you can't read. Delta sync and
    the change feed report it so; `list_id` is the list (one you could read) it left."""

    id: str
    list_id: str
    created_by: str
    deleted: Literal[True] = True
    deleted_at: UtcDatetime = Field(
        description="When it was deleted; for a todo moved out of your view, its last change."
    )
    version: int

    @classmethod
    def from_stored(cls, stored: StoredTodo) -> Self:
        """The tombstone of a deleted todo."""
        if stored.get("deleted_at") is None:
            raise ValueError("not a tombstone")
        return cls.model_validate(_todo_fields(stored))

    @classmethod
    def of_departed(cls, stored: StoredTodo, left: PydanticObjectId) -> Self:
        """The tombstone of a todo (deleted or not) as reported to the members of `left`, a
        list it was in: they learn nothing of where it is now."""
        fields = _todo_fields(stored)
        fields["list_id"] = str(left)
        fields["deleted_at"] = stored.get("deleted_at") or stored["updated_at"]
        return cls.model_validate(fields)


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
