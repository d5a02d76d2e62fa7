"""The current user's todos: create (idempotently), list and sync, read, replace, update, delete."""

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn

from beanie import PydanticObjectId
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import Field

from service.accounts.deps import CurrentUser
from service.config import Settings
from service.core.clock import utc_now
from service.core.deps import SettingsDep
from service.core.pagination import (
    CURSOR_PATTERN,
    CursorMismatchError,
    InvalidCursorError,
    decode_cursor,
    encode_cursor,
    fingerprint,
)
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
from service.todos import idempotency, store
from service.todos.dates import as_utc_instant, due_instant
from service.todos.deps import IfMatch, IfNoneMatch, OwnedTodo, TodoId
from service.todos.etags import etag, none_match
from service.todos.models import Todo
from service.todos.schemas import (
    DUE_RULES,
    MAX_TAGS,
    PRIORITY_MAX,
    SEARCH_MAX_LENGTH,
    ClearedTodos,
    Due,
    Instant,
    Tag,
    TodoChanges,
    TodoCreate,
    TodoPage,
    TodoPublic,
    TodoReplace,
    TodoUpdate,
    todo_or_tombstone,
)
from service.todos.store import SortOrder, TodoSort

router = APIRouter(tags=["todos"], responses=error_responses(Unauthorized))

TODO_NOT_FOUND = "Todo not found"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
TODO_CHANGED = "The todo has changed since that ETag: read it again and retry"


def _due_bound(value: str | None) -> datetime | None:
    return None if value is None else due_instant(value)


DueBound = Annotated[Due | None, Query(description=f"{DUE_RULES} A date means its midnight UTC.")]
# The pattern is documented but checked by decode_cursor, so that a bad cursor is a 400 like
# any other unusable cursor, not a 422.
Cursor = Annotated[str, Field(json_schema_extra={"pattern": CURSOR_PATTERN})]


@router.get(
    "/todos",
    summary="List todos, a page at a time, or what changed since an instant",
    responses=error_responses(BadRequest, Gone),
)
async def list_todos(
    user: CurrentUser,
    settings: SettingsDep,
    completed: Annotated[bool | None, Query(description="Only completed (or open) todos.")] = None,
    tag: Annotated[
        list[Tag] | None,
        Query(
            max_length=MAX_TAGS, description="Only todos with this tag; repeat for all of several."
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=SEARCH_MAX_LENGTH,
            description="Case-insensitive substring of text or notes, taken literally.",
        ),
    ] = None,
    due_before: DueBound = None,
    due_after: DueBound = None,
    priority: Annotated[int | None, Query(ge=0, le=PRIORITY_MAX)] = None,
    sort: Annotated[TodoSort | None, Query(description="Default `created`.")] = None,
    order: Annotated[SortOrder | None, Query(description="Default `desc`.")] = None,
    updated_since: Annotated[
        Instant | None,
        Query(
            description=(
                "Delta sync: only todos changed after this instant, in update order, "
                "up to the answer's `watermark`. A datetime with an offset, as for `due`."
            )
        ),
    ] = None,
    include_deleted: Annotated[
        bool, Query(description="With `updated_since`: also report deleted todos.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[
        Cursor | None,
        Query(
            description=(
                "`next_cursor` of the previous page; only valid with the same filters and sort."
            ),
        ),
    ] = None,
) -> TodoPage | TodoChanges:
    """Your todos, filtered and sorted (newest first by default), a page at a time.

    Paging is by keyset: todos created, changed or deleted while you page never make an
    unchanged todo repeat or go missing. Todos without `due` come last for `sort=due`.
    With `updated_since` (delta sync) it lists changes instead: see `TodoChanges`.
    """
    if updated_since is not None or include_deleted:
        if updated_since is None:
            raise BadRequest("include_deleted needs updated_since")
        if sort not in {None, TodoSort.UPDATED} or order not in {None, SortOrder.ASC}:
            raise BadRequest("Delta sync (updated_since) is always in update order: sort=updated")
        if any(f is not None for f in (completed, tag, q, due_before, due_after, priority)):
            raise BadRequest("Delta sync (updated_since) takes no filters")
        return await _list_changes(
            user_id=id_of(user),
            since=updated_since,
            include_deleted=include_deleted,
            limit=limit,
            cursor=cursor,
            settings=settings,
        )
    sort = sort or TodoSort.CREATED
    order = order or SortOrder.DESC
    filters = store.TodoFilters(
        completed=completed,
        tags=[t.lower() for t in tag or []],
        q=q,
        due_before=_due_bound(due_before),
        due_after=_due_bound(due_after),
        priority=priority,
    )
    query_fingerprint = fingerprint(
        {"owner": str(id_of(user)), "sort": sort, "order": order, **asdict(filters)}
    )
    keys = store.sort_keys(sort, order)
    # An empty cursor is a bad cursor (400), not "no cursor".
    after = _cursor_position(cursor, query_fingerprint, keys) if cursor is not None else None
    # One extra item tells whether there is a next page without a count query.
    todos = await store.find_todos(
        owner_id=id_of(user), filters=filters, sort=sort, order=order, limit=limit + 1, after=after
    )
    page = todos[:limit]
    next_cursor = (
        encode_cursor(store.cursor_key(page[-1], keys), query_fingerprint)
        if len(todos) > limit
        else None
    )
    return TodoPage(items=[TodoPublic.from_stored(t) for t in page], next_cursor=next_cursor)


async def _list_changes(
    *,
    user_id: PydanticObjectId,
    since: datetime,
    include_deleted: bool,
    limit: int,
    cursor: str | None,
    settings: Settings,
) -> TodoChanges:
    now = utc_now()
    if since < now - timedelta(days=settings.tombstone_retention_days):
        raise Gone(
            f"updated_since is older than the {settings.tombstone_retention_days}-day tombstone "
            "retention: deletions may be missing, so do a full resync (list without it)"
        )
    query_fingerprint = fingerprint(
        {
            "owner": str(user_id),
            "updated_since": since.astimezone(UTC).isoformat(),
            "include_deleted": include_deleted,
        }
    )
    keys = store.CHANGES_KEYS
    # The watermark is fixed by the first page and carried by the cursor, so that the pages of
    # one answer cover one interval.
    watermark = max(now - timedelta(milliseconds=settings.sync_lag_ms), since)
    after = None
    if cursor is not None:
        after = _cursor_position(cursor, query_fingerprint, keys)
        watermark = _cursor_watermark(cursor, query_fingerprint)
    todos = await store.find_changes(
        owner_id=user_id,
        since=since,
        until=watermark,
        include_deleted=include_deleted,
        limit=limit + 1,
        after=after,
    )
    page = todos[:limit]
    next_cursor = (
        encode_cursor(
            store.cursor_key(page[-1], keys),
            query_fingerprint,
            {"w": watermark.isoformat()},
        )
        if len(todos) > limit
        else None
    )
    return TodoChanges(
        items=[todo_or_tombstone(t) for t in page], next_cursor=next_cursor, watermark=watermark
    )


def _cursor_watermark(cursor: str, query_fingerprint: str) -> datetime:
    _, extra = decode_cursor(cursor, query_fingerprint)
    try:
        # Naive or out-of-range instants are ValueErrors: never reach the database.
        return as_utc_instant(datetime.fromisoformat(extra["w"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest("Invalid cursor") from exc


@router.post(
    "/todos/clear-completed",
    summary="Delete all completed todos",
)
async def clear_completed(user: CurrentUser) -> ClearedTodos:
    """Delete every completed todo of yours at once (delta sync and the feed see each one)."""
    return ClearedTodos(deleted=await store.clear_completed(owner_id=id_of(user)))


def _cursor_position(cursor: str, query_fingerprint: str, keys: list[store.SortKey]) -> list[Any]:
    try:
        key, _ = decode_cursor(cursor, query_fingerprint)
        return store.parse_cursor_key(key, keys)
    except CursorMismatchError as exc:
        raise BadRequest("This cursor belongs to a listing with other filters or sort") from exc
    except InvalidCursorError as exc:
        raise BadRequest("Invalid cursor") from exc


@router.get("/mytodos", summary="List todos as a plain array")
async def list_my_todos(
    user: CurrentUser, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[TodoPublic]:
    """Your newest todos as a bare JSON array (no paging), for simple clients."""
    todos = await store.list_todos(owner_id=id_of(user), limit=limit)
    return [TodoPublic.from_stored(t) for t in todos]


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
    response: Response,
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
) -> Response | TodoPublic:
    """Add a todo to your list; `Location` names the new todo, `ETag` its version.

    409 once you have MAX_TODOS_PER_USER live todos."""
    max_todos = settings.max_todos_per_user
    if idempotency_key is None:
        todo = await store.create_todo(
            owner_id=id_of(user), fields=body.model_dump(), max_todos=max_todos
        )
        response.headers["Location"] = _location(request, id_of(todo))
        return _with_etag(todo, response)
    answer = await idempotency.create_todo_once(
        owner_id=id_of(user),
        key=idempotency_key,
        fields=body.model_dump(),
        max_todos=max_todos,
        render=lambda todo: TodoPublic.from_document(todo).model_dump(mode="json"),
        location_of=lambda todo_id: _location(request, todo_id),
    )
    headers = {"Location": answer.location, "ETag": etag(answer.body["version"])}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


def _location(request: Request, todo_id: PydanticObjectId) -> str:
    # A path, not a URL: it doesn't depend on a Host header a proxy may have rewritten.
    path: str = request.app.url_path_for("read_todo", todo_id=str(todo_id))
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
    if none_match(if_none_match, todo.version):
        return Response(
            status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(todo.version)}
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
    todo = await _update(
        user_id=id_of(user), todo_id=todo_id, changes=body.model_dump(), versions=versions
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
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        todo = await store.get_todo(owner_id=id_of(user), todo_id=todo_id)
        if todo is None:
            raise NotFound(TODO_NOT_FOUND)
        if versions is not None and todo.version not in versions:
            raise PreconditionFailed(TODO_CHANGED)
        return _with_etag(todo, response)
    todo = await _update(user_id=id_of(user), todo_id=todo_id, changes=changes, versions=versions)
    return _with_etag(todo, response)


@router.delete(
    "/todos/{todo_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a todo",
    responses=error_responses(BadRequest, NotFound, PreconditionFailed),
)
async def delete_todo(todo_id: TodoId, user: CurrentUser, versions: IfMatch) -> None:
    """Delete one of your todos; with `If-Match`, only if it is at that ETag (else 412)."""
    if not await store.delete_todo(owner_id=id_of(user), todo_id=todo_id, versions=versions):
        await _missing_or_changed(user_id=id_of(user), todo_id=todo_id)


def _with_etag(todo: Todo, response: Response) -> TodoPublic:
    response.headers["ETag"] = etag(todo.version)
    return TodoPublic.from_document(todo)


async def _missing_or_changed(*, user_id: PydanticObjectId, todo_id: PydanticObjectId) -> NoReturn:
    """Why a conditional write matched nothing: 404 if not the user's todo, else 412."""
    # Ownership first: someone else's todo is a 404 whatever If-Match says.
    if await store.get_todo(owner_id=user_id, todo_id=todo_id) is None:
        raise NotFound(TODO_NOT_FOUND)
    raise PreconditionFailed(TODO_CHANGED)


async def _update(
    *,
    user_id: PydanticObjectId,
    todo_id: PydanticObjectId,
    changes: dict[str, Any],
    versions: list[int] | None,
) -> Todo:
    # The owner filter, the version check and the write are one operation: no read-then-write.
    todo = await store.update_todo(
        owner_id=user_id, todo_id=todo_id, changes=changes, versions=versions
    )
    if todo is None:
        await _missing_or_changed(user_id=user_id, todo_id=todo_id)
    return todo
