"""The current user's todos: create, list, read, replace, update and delete."""

from typing import Annotated, Any

from beanie import PydanticObjectId
from fastapi import APIRouter, Query, Request, Response, status

from service import crud
from service.api.deps import CurrentUser, OwnedTodo, SettingsDep, TodoId
from service.exceptions import BadRequest, Conflict, NotFound, Unauthorized, error_responses
from service.models import id_of
from service.pagination import CURSOR_PATTERN, InvalidCursorError, decode_cursor, encode_cursor
from service.schemas import TodoCreate, TodoPage, TodoPublic, TodoReplace, TodoUpdate

router = APIRouter(tags=["todos"], responses=error_responses(Unauthorized))

TODO_NOT_FOUND = "Todo not found"


@router.get("/todos", summary="List todos, a page at a time", responses=error_responses(BadRequest))
async def list_todos(
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[
        str | None,
        # The pattern is documented but checked by decode_cursor, so that a bad cursor is a
        # 400 like any other unusable cursor, not a 422.
        Query(
            description="`next_cursor` of the previous page.",
            json_schema_extra={"pattern": CURSOR_PATTERN},
        ),
    ] = None,
) -> TodoPage:
    """Your todos, newest first. Todos added while you page don't shift later pages."""
    try:
        before = decode_cursor(cursor) if cursor is not None else None
    except InvalidCursorError as exc:
        raise BadRequest("Invalid cursor") from exc
    # One extra item tells whether there is a next page without a count query.
    todos = await crud.todos.list_todos(owner_id=id_of(user), limit=limit + 1, before=before)
    page = todos[:limit]
    next_cursor = encode_cursor(id_of(page[-1])) if len(todos) > limit else None
    return TodoPage(items=[TodoPublic.from_document(t) for t in page], next_cursor=next_cursor)


@router.get("/mytodos", summary="List todos as a plain array")
async def list_my_todos(
    user: CurrentUser, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[TodoPublic]:
    """Your newest todos as a bare JSON array (no paging), for simple clients."""
    todos = await crud.todos.list_todos(owner_id=id_of(user), limit=limit)
    return [TodoPublic.from_document(t) for t in todos]


@router.post(
    "/todos",
    status_code=status.HTTP_201_CREATED,
    summary="Create a todo",
    responses=error_responses(Conflict),
)
async def create_todo(
    body: TodoCreate,
    user: CurrentUser,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> TodoPublic:
    """Add a todo to your list; `Location` names the new todo. 409 once you have the maximum."""
    todo = await crud.todos.create_todo(
        owner_id=id_of(user),
        text=body.text,
        completed=body.completed,
        max_todos=settings.max_todos_per_user,
    )
    response.headers["Location"] = str(request.url_for("read_todo", todo_id=str(id_of(todo))))
    return TodoPublic.from_document(todo)


@router.get("/todos/{todo_id}", summary="Read a todo", responses=error_responses(NotFound))
async def read_todo(todo: OwnedTodo) -> TodoPublic:
    """One of your todos."""
    return TodoPublic.from_document(todo)


@router.put("/todos/{todo_id}", summary="Replace a todo", responses=error_responses(NotFound))
async def replace_todo(todo_id: TodoId, body: TodoReplace, user: CurrentUser) -> TodoPublic:
    """Set every writable field of one of your todos."""
    return await _update(user_id=id_of(user), todo_id=todo_id, changes=body.model_dump())


@router.patch("/todos/{todo_id}", summary="Update a todo", responses=error_responses(NotFound))
async def update_todo(todo_id: TodoId, body: TodoUpdate, user: CurrentUser) -> TodoPublic:
    """Change only the fields you send."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        todo = await crud.todos.get_todo(owner_id=id_of(user), todo_id=todo_id)
        if todo is None:
            raise NotFound(TODO_NOT_FOUND)
        return TodoPublic.from_document(todo)
    return await _update(user_id=id_of(user), todo_id=todo_id, changes=changes)


@router.delete(
    "/todos/{todo_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a todo",
    responses=error_responses(NotFound),
)
async def delete_todo(todo_id: TodoId, user: CurrentUser) -> None:
    """Delete one of your todos."""
    if not await crud.todos.delete_todo(owner_id=id_of(user), todo_id=todo_id):
        raise NotFound(TODO_NOT_FOUND)


async def _update(
    *, user_id: PydanticObjectId, todo_id: PydanticObjectId, changes: dict[str, Any]
) -> TodoPublic:
    # The owner filter and the write are one operation: no read-then-write window.
    todo = await crud.todos.update_todo(owner_id=user_id, todo_id=todo_id, changes=changes)
    if todo is None:
        raise NotFound(TODO_NOT_FOUND)
    return TodoPublic.from_document(todo)
