"""The todo a path names (404 unless it is in a list the caller can read) and the conditional
headers."""

from typing import Annotated, Any

from beanie import PydanticObjectId
from fastapi import Depends, Header, Path
from pydantic import Field

from service.errors import BadRequest, NotFound
from service.lists.deps import CurrentCaller
from service.todos import store
from service.todos.etags import (
    CONDITION_PATTERN,
    MalformedConditionError,
    check_condition,
    if_match_versions,
)
from service.todos.models import StoredTodo
from service.todos.schemas import OBJECT_ID_PATTERN
from service.todos.service import TODO_NOT_FOUND


async def get_todo_id(
    todo_id: Annotated[str, Path(pattern=OBJECT_ID_PATTERN, description="The todo's id.")],
) -> PydanticObjectId:
    return PydanticObjectId(todo_id)


TodoId = Annotated[PydanticObjectId, Depends(get_todo_id)]


async def get_readable_todo(todo_id: TodoId, caller: CurrentCaller) -> StoredTodo:
    """The live todo, if it is in a list the caller can read (one query: the caller's lists
    came with their session); 404 otherwise, the same as for an id that doesn't exist, so
    other lists' ids aren't revealed."""
    todo = await store.get_todo(todo_id=todo_id, lists=caller.readable())
    if todo is None:
        raise NotFound(TODO_NOT_FOUND)
    return todo


ReadableTodo = Annotated[StoredTodo, Depends(get_readable_todo)]

ETAG_HEADER_MAX_LENGTH = 2048
MALFORMED_CONDITION = '{} must be * or a comma-separated list of entity tags ("3" or W/"3")'


# The syntax is documented but checked by get_if_match / get_if_none_match, so that a malformed
# value is a 400 naming the header (RFC 9110 syntax), not FastAPI's 422 repeating the pattern.
Condition = Annotated[
    str, Field(max_length=ETAG_HEADER_MAX_LENGTH, json_schema_extra={"pattern": CONDITION_PATTERN})
]


def _condition_header(description: str) -> Any:
    return Header(
        description=f"{description} `*` or a comma-separated list of entity tags "
        '(`"3"`, `W/"3"`, RFC 9110); anything else is a 400.',
    )


# Typed without None and defaulted to it: the schema then says "optional, a string", where
# `str | None` would document a `null` no header can carry.
async def get_if_match(
    if_match: Annotated[
        Condition,
        _condition_header("Only change the todo if its ETag is one of these (else 412)."),
    ] = None,  # type: ignore[assignment]  # None = not sent
) -> list[int] | None:
    """The versions If-Match allows; None when there is no condition; 400 if malformed."""
    try:
        return if_match_versions(if_match)
    except MalformedConditionError as exc:
        raise BadRequest(MALFORMED_CONDITION.format("If-Match")) from exc


async def get_if_none_match(
    if_none_match: Annotated[
        Condition,
        _condition_header("304 without a body if the todo's ETag is one of these."),
    ] = None,  # type: ignore[assignment]  # None = not sent (see get_if_match)
) -> str | None:
    """The If-None-Match header, checked for syntax (400 if malformed)."""
    if if_none_match is not None:
        try:
            check_condition(if_none_match)
        except MalformedConditionError as exc:
            raise BadRequest(MALFORMED_CONDITION.format("If-None-Match")) from exc
    return if_none_match


# Versions a write is conditional on (from If-Match); None for an unconditional write.
IfMatch = Annotated[list[int] | None, Depends(get_if_match)]
# A well-formed If-None-Match header, or None.
IfNoneMatch = Annotated[str | None, Depends(get_if_none_match)]
