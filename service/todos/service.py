"""Todo use cases of more than one query: creating once per Idempotency-Key, and conditional
writes (If-Match) that must tell a missing todo (404) from a changed one (412)."""

from dataclasses import dataclass
from typing import Any, NoReturn

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from service.core.budget import budgeted, unbudgeted
from service.core.clock import utc_now
from service.errors import Conflict, NotFound, PreconditionFailed, UnprocessableContent
from service.todos import idempotency, store
from service.todos.models import IdempotencyKey, StoredTodo, Todo
from service.todos.schemas import TodoPublic


@dataclass(frozen=True, slots=True)
class CreatedTodo:
    """The answer to a create: the new todo as the API returns it (a TodoPublic, as JSON), and
    whether it replays the answer to an earlier request with the same Idempotency-Key."""

    body: dict[str, Any]
    replayed: bool = False


@unbudgeted  # see create_todo_once
async def create_todo(
    *,
    owner_id: PydanticObjectId,
    fields: dict[str, Any],
    max_todos: int,
    idempotency_key: str | None = None,
) -> CreatedTodo:
    """Create a todo with the writable `fields` (a validated TodoCreate); with an
    Idempotency-Key, only the first time (create_todo_once). Conflict at `max_todos`."""
    if idempotency_key is not None:
        return await create_todo_once(
            owner_id=owner_id, key=idempotency_key, fields=fields, max_todos=max_todos
        )
    stored = await store.create_todo(owner_id=owner_id, fields=fields, max_todos=max_todos)
    return CreatedTodo(TodoPublic.from_stored(stored).model_dump(mode="json"))


# Unbudgeted as a whole: each database call in it is budgeted, but waiting for a concurrent
# first request is not database time.
@unbudgeted
async def create_todo_once(
    *,
    owner_id: PydanticObjectId,
    key: str,
    fields: dict[str, Any],
    max_todos: int,
) -> CreatedTodo:
    """Create the todo the first time this owner sends `key`; replay that answer afterwards.

    UnprocessableContent if the key was used with another body; Conflict if the first request
    with the key is still running after a few seconds.
    """
    now = utc_now()
    digest = idempotency.request_hash(fields)
    record, claimed = await idempotency.claim_key(
        owner_id=owner_id, key=key, digest=digest, now=now
    )
    if record.request_hash != digest:
        raise UnprocessableContent("This Idempotency-Key was used with a different request body")
    if claimed or idempotency.is_abandoned(record, now):
        return await _create_for(record, fields, max_todos)
    answered = await idempotency.await_answer(record)
    if answered is None:
        raise Conflict("The first request with this Idempotency-Key failed; retry")
    if answered.response_body is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry")
    return CreatedTodo(answered.response_body, replayed=True)


@budgeted
async def _create_for(
    record: IdempotencyKey, fields: dict[str, Any], max_todos: int
) -> CreatedTodo:
    """Create the todo of a claimed key, with the id the claim chose, and record the answer."""
    try:
        stored = await store.create_todo(
            owner_id=record.owner_id, fields=fields, max_todos=max_todos, todo_id=record.todo_id
        )
    except DuplicateKeyError:
        # A taken-over claim whose first request did insert the todo before dying.
        existing = await store.get_todo(owner_id=record.owner_id, todo_id=record.todo_id)
        if existing is None:
            raise
        stored = existing
    except BaseException:
        # Free the key so that a retry can try again.
        await idempotency.release_key(record)
        raise
    body = TodoPublic.from_stored(stored).model_dump(mode="json")
    await idempotency.record_answer(record, body)
    return CreatedTodo(body)


TODO_NOT_FOUND = "Todo not found"
TODO_CHANGED = "The todo has changed since that ETag: read it again and retry"


@budgeted
async def update_todo(
    *,
    owner_id: PydanticObjectId,
    todo_id: PydanticObjectId,
    changes: dict[str, Any],
    versions: list[int] | None,
) -> StoredTodo:
    """Apply `changes` (none: just read) to the owner's todo, if at one of `versions` when
    given. NotFound if it isn't the owner's todo, PreconditionFailed if at another version."""
    if not changes:
        stored = await store.get_todo(owner_id=owner_id, todo_id=todo_id)
        if stored is None:
            raise NotFound(TODO_NOT_FOUND)
        if versions is not None and stored["version"] not in versions:
            raise PreconditionFailed(TODO_CHANGED)
        return stored
    # The owner filter, the version check and the write are one operation: no read-then-write.
    updated = await store.update_todo(
        owner_id=owner_id, todo_id=todo_id, changes=changes, versions=versions
    )
    if updated is None:
        await _missing_or_changed(owner_id=owner_id, todo_id=todo_id)
    return updated


@budgeted
async def delete_todo(
    *, owner_id: PydanticObjectId, todo_id: PydanticObjectId, versions: list[int] | None
) -> None:
    """Delete the owner's todo, if at one of `versions` when given; NotFound or
    PreconditionFailed as for update_todo."""
    if not await store.delete_todo(owner_id=owner_id, todo_id=todo_id, versions=versions):
        await _missing_or_changed(owner_id=owner_id, todo_id=todo_id)


async def _missing_or_changed(*, owner_id: PydanticObjectId, todo_id: PydanticObjectId) -> NoReturn:
    """Why a conditional write matched nothing: 404 if not the owner's todo, else 412."""
    # Ownership first: someone else's todo is a 404 whatever If-Match says.
    if await store.get_todo(owner_id=owner_id, todo_id=todo_id) is None:
        raise NotFound(TODO_NOT_FOUND)
    raise PreconditionFailed(TODO_CHANGED)


# Called by accounts: account deletion (accounts/service.delete_everything_of) removes the
# owner's todos and their idempotency records in its transaction.
delete_todos_of = store.delete_todos_of


# lists: tombstones a deleted list's todos
@budgeted
async def delete_todos_in_list(*, list_id: PydanticObjectId) -> None:
    """Delete (as tombstones, for delta sync and the feed) every live todo of the list."""
    now = utc_now()
    await Todo.get_pymongo_collection().update_many(
        {"list_id": list_id, **store.LIVE},
        {
            "$set": {"deleted_at": now, "updated_at": now},
            "$inc": {"version": 1},
            "$unset": dict.fromkeys(store.TOMBSTONE_DROPS, ""),
        },
    )
