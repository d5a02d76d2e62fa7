"""The current user's todos: create (idempotently), list and sync, read, replace, update, delete."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from service.accounts.deps import CurrentUser
from service.core.deps import SettingsDep
from service.core.store import id_of
from service.errors import (
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    UnprocessableContent,
    error_responses,
)
from service.todos import listing, service, store
from service.todos.deps import IfMatch, IfNoneMatch, OwnedTodo, TodoId
from service.todos.etags import etag, none_match
from service.todos.models import StoredTodo
from service.todos.schemas import (
    ClearedTodos,
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


@router.get(
    "/todos",
    summary="List todos, a page at a time, or what changed since an instant",
    responses=error_responses(BadRequest, Gone),
)
async def list_todos(
    user: CurrentUser, settings: SettingsDep, query: Annotated[TodoQuery, Query()]
) -> TodoPage | TodoChanges:
    """Your todos, filtered and sorted (newest first by default), a page at a time.

    Paging is by keyset: todos created, changed or deleted while you page never make an
    unchanged todo repeat or go missing. Todos without `due` come last for `sort=due`.
    With `updated_since` (delta sync) it lists changes instead: see `TodoChanges`.
    """
    return await listing.list_todos(owner_id=id_of(user), query=query, settings=settings)


@router.post(
    "/todos/clear-completed",
    summary="Delete all completed todos",
)
async def clear_completed(user: CurrentUser) -> ClearedTodos:
    """Delete every completed todo of yours at once (delta sync and the feed see each one)."""
    return ClearedTodos(deleted=await store.clear_completed(owner_id=id_of(user)))


@router.get("/mytodos", summary="List todos as a plain array")
async def list_my_todos(
    user: CurrentUser, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[TodoPublic]:
    """Your newest todos as a bare JSON array (no paging), for simple clients."""
    return await listing.newest_todos(owner_id=id_of(user), limit=limit)


@router.post(
    "/todos",
    status_code=status.HTTP_201_CREATED,
    summary="Create a todo",
    response_model=TodoPublic,
    responses=error_responses(Conflict, UnprocessableContent),
)
async def create_todo(
    body: TodoCreate,
    user: CurrentUser,
    settings: SettingsDep,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
            description=(
                "Makes retries safe: a repeat with the same key and body within 24 h replays "
                "the first answer instead of creating again; another body is a 422."
            ),
        ),
    ] = None,
) -> JSONResponse:
    """Add a todo to your list; `Location` names the new todo, `ETag` its version.

    409 once you have MAX_TODOS_PER_USER live todos."""
    created = await service.create_todo(
        owner_id=id_of(user),
        fields=body.model_dump(),
        max_todos=settings.max_todos_per_user,
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
    todo: OwnedTodo, response: Response, if_none_match: IfNoneMatch
) -> Response | TodoPublic:
    """One of your todos, with its `ETag`; 304 if `If-None-Match` names it."""
    if none_match(if_none_match, todo["version"]):
        return Response(
            status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(todo["version"])}
        )
    return _with_etag(todo, response)


@router.put(
    "/todos/{todo_id}",
    summary="Replace a todo",
    responses=error_responses(BadRequest, NotFound, PreconditionFailed),
)
async def replace_todo(
    todo_id: TodoId, body: TodoReplace, user: CurrentUser, versions: IfMatch, response: Response
) -> TodoPublic:
    """Set every writable field of one of your todos; those not sent reset to their defaults.

    With `If-Match`, only if the todo is still at that ETag (else 412, nothing changes).
    """
    todo = await service.update_todo(
        owner_id=id_of(user), todo_id=todo_id, changes=body.model_dump(), versions=versions
    )
    return _with_etag(todo, response)


@router.patch(
    "/todos/{todo_id}",
    summary="Update a todo",
    responses=error_responses(BadRequest, NotFound, PreconditionFailed),
)
async def update_todo(
    todo_id: TodoId, body: TodoUpdate, user: CurrentUser, versions: IfMatch, response: Response
) -> TodoPublic:
    """Change only the fields you send; with `If-Match`, only if the todo is at that ETag."""
    todo = await service.update_todo(
        owner_id=id_of(user),
        todo_id=todo_id,
        changes=body.model_dump(exclude_unset=True),
        versions=versions,
    )
    return _with_etag(todo, response)


@router.delete(
    "/todos/{todo_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a todo",
    responses=error_responses(BadRequest, NotFound, PreconditionFailed),
)
async def delete_todo(todo_id: TodoId, user: CurrentUser, versions: IfMatch) -> None:
    """Delete one of your todos; with `If-Match`, only if it is at that ETag (else 412)."""
    await service.delete_todo(owner_id=id_of(user), todo_id=todo_id, versions=versions)


def _with_etag(todo: StoredTodo, response: Response) -> TodoPublic:
    response.headers["ETag"] = etag(todo["version"])
    return TodoPublic.from_stored(todo)
