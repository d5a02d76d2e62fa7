"""Todos in the caller's lists: create (idempotently), list and sync, read, replace, update,
move, delete. Who may do what is the caller's role in the todo's list (lists/access.py):
every member reads, editors and owners write, anyone else gets the 404 of a missing id."""

from typing import Annotated

from beanie import PydanticObjectId
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from service.core.deps import SettingsDep
from service.core.query import query_parameters, query_reader
from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    UnprocessableContent,
    error_responses,
)
from service.lists.deps import CurrentCaller
from service.todos import listing, service
from service.todos.deps import IfMatch, IfNoneMatch, ReadableTodo, TodoId
from service.todos.etags import etag, none_match
from service.todos.models import StoredTodo
from service.todos.schemas import (
    ClearedTodos,
    ListId,
    TodoChanges,
    TodoCreate,
    TodoPage,
    TodoPublic,
    TodoQuery,
    TodoReplace,
    TodoUpdate,
)

router = APIRouter(tags=["todos"], responses=error_responses(Unauthorized))

IDEMPOTENCY_KEY_MAX_LENGTH = 255


def _list_id(value: str | None) -> PydanticObjectId | None:
    return None if value is None else PydanticObjectId(value)


@router.get(
    "/todos",
    summary="List todos, a page at a time, or what changed since an instant",
    responses=error_responses(BadRequest, NotFound, Gone),
    openapi_extra=query_parameters(TodoQuery),
)
async def list_todos(
    caller: CurrentCaller,
    settings: SettingsDep,
    query: Annotated[TodoQuery, Depends(query_reader(TodoQuery))],
) -> TodoPage | TodoChanges:
    """The todos of every list you can read, or of one (`list_id`), filtered and sorted
    (newest first by default), a page at a time.

    Paging is by keyset: todos created, changed or deleted while you page never make an
    unchanged todo repeat or go missing. Todos without `due` come last for `sort=due`.
    With `updated_since` (delta sync) it lists changes instead: see `TodoChanges`; a todo that
    left your view (deleted, or moved to a list you can't read) comes as a tombstone whose
    `list_id` is the list of yours it left.
    """
    return await listing.list_todos(caller=caller, query=query, settings=settings)


@router.post(
    "/todos/clear-completed",
    summary="Delete all completed todos",
    responses=error_responses(BadRequest, Forbidden, NotFound),
)
async def clear_completed(
    caller: CurrentCaller,
    list_id: Annotated[
        ListId | None,
        Query(
            description=(
                "Only this list (editor or owner; 404 if you aren't a member, 403 for a "
                "viewer); default: every list you may change."
            )
        ),
    ] = None,
) -> ClearedTodos:
    """Delete every completed todo of the lists you may change (or of `list_id`) at once
    (delta sync and the feed see each one)."""
    deleted = await service.clear_completed(caller=caller, list_id=_list_id(list_id))
    return ClearedTodos(deleted=deleted)


@router.get("/mytodos", summary="List todos as a plain array")
async def list_my_todos(
    caller: CurrentCaller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[TodoPublic]:
    """The newest todos of every list you can read, as a bare JSON array (no paging), for
    simple clients."""
    return await listing.newest_todos(caller=caller, limit=limit)


@router.post(
    "/todos",
    status_code=status.HTTP_201_CREATED,
    summary="Create a todo",
    response_model=TodoPublic,
    responses=error_responses(Forbidden, NotFound, Conflict, UnprocessableContent),
)
async def create_todo(
    body: TodoCreate,
    caller: CurrentCaller,
    settings: SettingsDep,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
            description=(
                "Makes retries safe: a repeat with the same key and body within 24 h replays "
                "the first answer instead of creating again; another body is a 422. Keys are "
                "yours, whichever list the todo goes to."
            ),
        ),
    ] = None,
) -> JSONResponse:
    """Add a todo to your default list, or to `list_id` (editor or owner: 404 for a list you
    aren't a member of, 403 for a viewer); `Location` names the new todo, `ETag` its version.

    409 once the list holds MAX_TODOS_PER_LIST live todos."""
    created = await service.create_todo(
        caller=caller,
        fields=body.model_dump(exclude={"list_id"}),
        list_id=_list_id(body.list_id),
        max_todos=settings.max_todos_per_list,
        idempotency_key=idempotency_key,
    )
    headers = {
        "Location": _location(request, created.body["id"]),
        "ETag": etag(created.body["version"]),
    }
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(created.body, status_code=status.HTTP_201_CREATED, headers=headers)


def _location(request: Request, todo_id: str) -> str:
    # A path, not a URL: it doesn't depend on a Host header a proxy may have rewritten.
    path: str = request.app.url_path_for("read_todo", todo_id=todo_id)
    return path


@router.get(
    "/todos/{todo_id}",
    summary="Read a todo",
    response_model=TodoPublic,
    responses={
        status.HTTP_304_NOT_MODIFIED: {"description": "If-None-Match matched the todo's ETag."},
        **error_responses(BadRequest, NotFound),
    },
)
async def read_todo(
    todo: ReadableTodo, response: Response, if_none_match: IfNoneMatch
) -> Response | TodoPublic:
    """A todo of a list you can read, with its `ETag`; 304 if `If-None-Match` names it."""
    if none_match(if_none_match, todo["version"]):
        return Response(
            status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(todo["version"])}
        )
    return _with_etag(todo, response)


# Every write: 404 for a todo you can't read, 403 for a viewer of its list, 412 for a stale
# If-Match, 409 when it changed under the write (retry), or when a move's target is full.
WRITE_ERRORS = error_responses(BadRequest, Forbidden, NotFound, Conflict, PreconditionFailed)


@router.put(
    "/todos/{todo_id}",
    summary="Replace a todo",
    responses=WRITE_ERRORS,
)
async def replace_todo(
    todo_id: TodoId,
    body: TodoReplace,
    caller: CurrentCaller,
    settings: SettingsDep,
    versions: IfMatch,
    response: Response,
) -> TodoPublic:
    """Set every writable field of a todo (editor or owner of its list); those not sent reset
    to their defaults, except `list_id`: with it the todo moves there, without it it stays.

    With `If-Match`, only if the todo is still at that ETag (else 412, nothing changes).
    """
    todo = await service.update_todo(
        caller=caller,
        todo_id=todo_id,
        changes=body.model_dump(exclude={"list_id"}),
        versions=versions,
        list_id=_list_id(body.list_id),
        max_todos=settings.max_todos_per_list,
    )
    return _with_etag(todo, response)


@router.patch(
    "/todos/{todo_id}",
    summary="Update a todo",
    responses=WRITE_ERRORS,
)
async def update_todo(
    todo_id: TodoId,
    body: TodoUpdate,
    caller: CurrentCaller,
    settings: SettingsDep,
    versions: IfMatch,
    response: Response,
) -> TodoPublic:
    """Change only the fields you send (editor or owner of its list); `list_id` moves it to
    that list (editor or owner of both). With `If-Match`, only if the todo is at that ETag."""
    changes = body.model_dump(exclude_unset=True)
    target = changes.pop("list_id", None)
    todo = await service.update_todo(
        caller=caller,
        todo_id=todo_id,
        changes=changes,
        versions=versions,
        list_id=_list_id(target),
        max_todos=settings.max_todos_per_list,
    )
    return _with_etag(todo, response)


@router.delete(
    "/todos/{todo_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a todo",
    responses=error_responses(BadRequest, Forbidden, NotFound, Conflict, PreconditionFailed),
)
async def delete_todo(todo_id: TodoId, caller: CurrentCaller, versions: IfMatch) -> None:
    """Delete a todo (editor or owner of its list); with `If-Match`, only if it is at that
    ETag (else 412)."""
    await service.delete_todo(caller=caller, todo_id=todo_id, versions=versions)


def _with_etag(todo: StoredTodo, response: Response) -> TodoPublic:
    response.headers["ETag"] = etag(todo["version"])
    return TodoPublic.from_stored(todo)
