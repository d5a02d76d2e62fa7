"""The export file's format (version 1): what GET /api/export writes and POST /api/import
reads back."""

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from service.core.schemas import InputModel, UtcDatetime
from service.lists.models import Role
from service.lists.schemas import ListName
from service.todos.schemas import Due, Priority, Tags, TodoNotes, TodoText

EXPORT_VERSION = 1
# Static bounds of the schema; the settings' limits (IMPORT_MAX_TODOS, MAX_LISTS_PER_USER,
# MAX_TODOS_PER_LIST) are lower and checked by service.validate_import with a path each.
MAX_LISTS_IN_FILE = 100_000
MAX_TODOS_IN_FILE_LIST = 100_000
# Wide enough for any timestamp or id an export writes; the values are ignored.
IGNORED_TEXT = 64
MAX_IGNORED_VERSION = 2**53 - 1


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class ExportTodo(BaseModel):
    """A live todo as an export writes it: its fields, without its list (the file's list
    holding it says which)."""

    id: str
    created_by: str
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


class ExportList(BaseModel):
    name: str
    role: Role = Field(description="Your role in the list when it was exported.")
    default: bool = Field(description="Whether it is your default list.")
    todos: list[ExportTodo]


class ExportFile(BaseModel):
    """The whole export: every list you can read, with its live todos."""

    version: Literal[1]
    exported_at: UtcDatetime
    lists: list[ExportList]


IgnoredText = Annotated[
    str | None, Field(max_length=IGNORED_TEXT, description="Written by an export; ignored.")
]


class ImportTodo(InputModel):
    """A todo to create. What an export also writes (ids, timestamps, version) is accepted
    and ignored: the new todo is the caller's, with its own."""

    text: TodoText
    notes: TodoNotes = ""
    completed: bool = False
    due: Due | None = None
    priority: Priority = 0
    tags: Tags = Field(default_factory=list)
    id: IgnoredText = None
    created_by: IgnoredText = None
    completed_at: IgnoredText = None
    created_at: IgnoredText = None
    updated_at: IgnoredText = None
    # A number, not an integer: ignored, so `3.0` (an integer to JSON Schema) may come too.
    # At most 2**53 - 1: it is read as a float, and every integer above that reads as 2**53 or
    # more, so still over the bound (with 2**53, 2**53 + 1 read as 2**53 and passed: ST201).
    version: Annotated[
        float | None,
        Field(ge=0, le=MAX_IGNORED_VERSION, description="Written by an export; ignored."),
    ] = None

    def fields(self) -> dict[str, object]:
        """The writable fields, as a TodoCreate gives them to the todos store."""
        return self.model_dump(include={"text", "notes", "completed", "due", "priority", "tags"})


class ImportList(InputModel):
    name: ListName
    role: Annotated[
        Role | None,
        Field(description="Written by an export; ignored: imported lists are yours."),
    ] = None
    default: bool = Field(
        default=False,
        description=(
            "Its todos go into your default list instead of a new list (its name is then "
            "ignored); an export marks your default list so."
        ),
    )
    todos: Annotated[list[ImportTodo], Field(max_length=MAX_TODOS_IN_FILE_LIST)] = Field(
        default_factory=list
    )


def _not_a_boolean(value: Any) -> Any:
    # Python's True == 1, so Literal[1] alone takes `true`, which JSON Schema's `const: 1`
    # doesn't (1.0 is the integer 1 in JSON Schema, and is taken).
    if isinstance(value, bool):
        raise PydanticCustomError("literal_error", "Input should be 1")
    return value


class ImportFile(InputModel):
    """An export file (version 1) to import."""

    version: Annotated[Literal[1], BeforeValidator(_not_a_boolean)]
    exported_at: IgnoredText = None
    lists: Annotated[list[ImportList], Field(max_length=MAX_LISTS_IN_FILE)]


class Imported(BaseModel):
    lists: int = Field(description="How many lists were created.")
    todos: int = Field(description="How many todos were created.")
