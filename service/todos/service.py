"""Todo use cases of more than one query: creating in a list (its todo slot, once per
Idempotency-Key), conditional writes that must tell why they matched nothing (404, 403 or
412), moves between lists, and clearing completed todos list by list.

Every write is one conditional update filtered on the lists the caller may change (and the
If-Match versions): on success that is all it costs. Only when it matches nothing does
`writable_todo` read the todo to say why.
"""

import contextlib
from dataclasses import dataclass
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, PyMongoError

from service.core.budget import budgeted, unbudgeted
from service.core.clock import utc_now
from service.errors import Conflict, NotFound, PreconditionFailed, UnprocessableContent
from service.lists import service as lists
from service.lists.access import LIST_NOT_FOUND, WRITE, Caller
from service.todos import idempotency, store
from service.todos.models import IdempotencyKey, StoredTodo
from service.todos.schemas import TodoPublic

TODO_NOT_FOUND = "Todo not found"
TODO_CHANGED = "The todo has changed since that ETag: read it again and retry"
# A write matched nothing, yet the todo now passes every check: it was moved or changed
# between the write and the read that explains it.
TODO_RACED = "The todo changed while it was being written: read it again and retry"


def list_full(max_todos: int) -> str:
    return f"Todo limit reached: at most {max_todos} todos per list; delete some first."


@dataclass(frozen=True, slots=True)
class CreatedTodo:
    """The answer to a create: the new todo as the API returns it (a TodoPublic, as JSON), and
    whether it replays the answer to an earlier request with the same Idempotency-Key."""

    body: dict[str, Any]
    replayed: bool = False


@unbudgeted  # see create_todo_once
async def create_todo(
    *,
    caller: Caller,
    fields: dict[str, Any],
    list_id: PydanticObjectId | None,
    max_todos: int,
    idempotency_key: str | None = None,
) -> CreatedTodo:
    """Create a todo with the writable `fields` (a validated TodoCreate, without list_id) in
    `list_id` (default: the caller's default list), which the caller must be an editor or
    owner of; with an Idempotency-Key, only the first time (create_todo_once). Conflict when
    the list holds `max_todos` todos."""
    target = caller.default_list_id if list_id is None else list_id
    caller.require(target, WRITE)
    if idempotency_key is not None:
        # The body as sent: a key first used without list_id still matches a retry without it.
        sent = fields if list_id is None else {**fields, "list_id": str(list_id)}
        return await create_todo_once(
            caller=caller,
            key=idempotency_key,
            digest=idempotency.request_hash(sent),
            fields=fields,
            list_id=target,
            max_todos=max_todos,
        )
    stored = await _insert(caller, target, fields, max_todos)
    return CreatedTodo(TodoPublic.from_stored(stored).model_dump(mode="json"))


async def _insert(
    caller: Caller,
    list_id: PydanticObjectId,
    fields: dict[str, Any],
    max_todos: int,
    todo_id: PydanticObjectId | None = None,
) -> StoredTodo:
    """Insert the todo, then take one of the list's todo slots; if the list has none left
    (full, or deleted since the request began), the todo is withdrawn again: two round trips.

    The count of a list's live todos lives on the list document: without transactions, only a
    conditional update of one document can check the limit and take a slot atomically
    (count-then-insert would let parallel creates all pass the check). The slot comes second
    so that the list's deletion can't strand the todo: the slot is taken only while the list
    is live, so a deletion that comes after it tombstones the list after the todo was in, and
    its sweep of the list's todos (lists.service.delete_list) takes this one too. (Taken
    first, a deletion between slot and insert left the todo live in a deleted list, which cost
    every create into a shared list a third round trip to check.)

    A withdrawn todo was live for a moment: readers in that moment (a page, delta sync, the
    feed) saw it, so it becomes a tombstone like any deleted todo, and delta sync and the feed
    report its deletion (a hard delete would leave a client that synced in that moment
    holding it for good). Hidden until its slot is taken would cost a third write on every
    create to reveal it. If the request dies between the insert and the slot (or the slot's
    write fails and so does the withdrawal), the todo stays without its slot: that list's
    limit is one looser until a todo of it is deleted, never a todo live in a deleted list.
    """
    stored = await store.insert_todo(
        list_id=list_id, created_by=caller.user_id, fields=fields, todo_id=todo_id
    )
    try:
        reserved = await lists.reserve_todo_slot(list_id=list_id, max_todos=max_todos)
    except Exception:
        # Unknown whether the slot was taken: withdrawn, the count is at worst one high.
        with contextlib.suppress(PyMongoError):
            await store.delete_todo(todo_id=stored["_id"], lists=[list_id])
        raise
    if not reserved:
        # Already a tombstone if the list's deletion swept it meanwhile: then this matches
        # nothing.
        await store.delete_todo(todo_id=stored["_id"], lists=[list_id])
        raise await no_slot(list_id, max_todos)
    return stored


@budgeted
async def no_slot(
    list_id: PydanticObjectId, max_todos: int, session: AsyncClientSession | None = None
) -> NotFound | Conflict:
    """Why a list gave no todo slot: it is full, or it was deleted since the request began
    (the caller's memberships were read before): then it is a list that doesn't exist. In
    `session`'s transaction if given (an import)."""
    if await lists.list_is_live(list_id=list_id, session=session):
        return Conflict(list_full(max_todos))
    return NotFound(LIST_NOT_FOUND)


async def _stay_in_live_list(caller: Caller, list_id: PydanticObjectId) -> None:
    """After a todo was moved into `list_id`: NotFound, with every live todo of the list
    deleted, if the list was deleted meanwhile.

    The slot was taken while the list was live, but a deletion can tombstone the list and its
    todos between the slot and the write: the todo would stay, live, in a deleted list. The
    write is one operation and the list's deletion another (no transactions), so the check
    comes after the write: if the list is still live now, its deletion's tombstoning of todos
    is yet to come and will take this one too; if not, this request deletes them itself.
    The caller's own default list is exempt: it is deleted only with their account, which
    ends this request's session too. (A create takes its slot after the write instead, see
    _insert; a move can't be undone as simply as an insert.)
    """
    if list_id == caller.default_list_id or await lists.list_is_live(list_id=list_id):
        return
    await store.delete_todos_in_list(list_id=list_id)
    raise NotFound(LIST_NOT_FOUND)


# Unbudgeted as a whole: each database call in it is budgeted, but waiting for a concurrent
# first request is not database time.
@unbudgeted
async def create_todo_once(
    *,
    caller: Caller,
    key: str,
    digest: str,
    fields: dict[str, Any],
    list_id: PydanticObjectId,
    max_todos: int,
) -> CreatedTodo:
    """Create the todo the first time this user sends `key` (with a body of this `digest`);
    replay that answer afterwards. Keys are the user's, whichever list the todo goes to.

    UnprocessableContent if the key was used with another body; Conflict if the first request
    with the key is still running after a few seconds.
    """
    now = utc_now()
    record, claimed = await idempotency.claim_key(
        owner_id=caller.user_id, key=key, digest=digest, now=now
    )
    if record.request_hash != digest:
        raise UnprocessableContent("This Idempotency-Key was used with a different request body")
    if claimed or idempotency.is_abandoned(record, now):
        return await _create_for(caller, record, fields, list_id, max_todos)
    answered = await idempotency.await_answer(record)
    if answered is None:
        raise Conflict("The first request with this Idempotency-Key failed; retry")
    if answered.response_body is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry")
    return CreatedTodo(answered.response_body, replayed=True)


@budgeted
async def _create_for(
    caller: Caller,
    record: IdempotencyKey,
    fields: dict[str, Any],
    list_id: PydanticObjectId,
    max_todos: int,
) -> CreatedTodo:
    """Create the todo of a claimed key, with the id the claim chose, and record the answer."""
    try:
        stored = await _insert(caller, list_id, fields, max_todos, todo_id=record.todo_id)
    except DuplicateKeyError:
        # A taken-over claim whose first request did insert the todo before dying.
        existing = await store.get_todo(todo_id=record.todo_id, lists=caller.readable())
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


@budgeted
async def writable_todo(
    *, caller: Caller, todo_id: PydanticObjectId, versions: list[int] | None
) -> StoredTodo:
    """The live todo, if the caller may change it and it is at one of `versions` (when
    given); else why not, in this order: NotFound if they can't read it (as for an id that
    doesn't exist), Forbidden if they only view its list, PreconditionFailed if it is at
    another version.

    The one explanation of every todo write that matched nothing.
    """
    stored = await store.get_todo(todo_id=todo_id, lists=caller.readable())
    if stored is None:
        raise NotFound(TODO_NOT_FOUND)
    caller.require(stored["list_id"], WRITE)  # readable: only a Forbidden can come of it
    if versions is not None and stored["version"] not in versions:
        raise PreconditionFailed(TODO_CHANGED)
    return stored


@budgeted
async def update_todo(
    *,
    caller: Caller,
    todo_id: PydanticObjectId,
    changes: dict[str, Any],
    versions: list[int] | None,
    list_id: PydanticObjectId | None = None,
    max_todos: int,
) -> StoredTodo:
    """Apply `changes` (none: just read) to the todo, if the caller may change it, at one of
    `versions` when given; with `list_id`, in that list (moving it there if it is elsewhere).
    Errors as writable_todo says; for a move, also NotFound ("List not found") or Forbidden
    for the target list, and Conflict if it is full."""
    if list_id is not None:
        caller.require(list_id, WRITE)
    if not changes:
        current = await writable_todo(caller=caller, todo_id=todo_id, versions=versions)
        if list_id is None or current["list_id"] == list_id:
            return current
        return await _move(caller, current, list_id, changes, versions, max_todos)
    # The list filter, the version check and the write are one operation: no read-then-write.
    # With list_id, this only matches a todo that is already there (not a move).
    updated = await store.update_todo(
        todo_id=todo_id,
        lists=caller.writable() if list_id is None else [list_id],
        readable=caller.readable(),
        changes=changes,
        versions=versions,
    )
    if updated is not None:
        return updated
    current = await writable_todo(caller=caller, todo_id=todo_id, versions=versions)
    if list_id is None or current["list_id"] == list_id:
        raise Conflict(TODO_RACED)
    return await _move(caller, current, list_id, changes, versions, max_todos)


async def _move(
    caller: Caller,
    current: StoredTodo,
    target: PydanticObjectId,
    changes: dict[str, Any],
    versions: list[int] | None,
    max_todos: int,
) -> StoredTodo:
    """Move `current` (a todo the caller may change) to `target` with `changes`: a slot of
    the target taken first, then one atomic update of the todo (only if it is still in its
    list), then the source's slot given back; the target's slot goes back if the todo didn't
    move. Both lists' counts stay exact whatever runs in parallel."""
    source: PydanticObjectId = current["list_id"]
    if not await lists.reserve_todo_slot(list_id=target, max_todos=max_todos):
        raise await no_slot(target, max_todos)
    try:
        moved, stored = await store.move_todo(
            todo_id=current["_id"],
            source=source,
            target=target,
            readable=caller.readable(),
            changes=changes,
            versions=versions,
        )
    except Exception:
        with contextlib.suppress(PyMongoError):
            await lists.release_todo_slots(list_id=target, count=1)
        raise
    if not moved:
        await lists.release_todo_slots(list_id=target, count=1)
        # Moved, changed or deleted since it was read: say which.
        await writable_todo(caller=caller, todo_id=current["_id"], versions=versions)
        raise Conflict(TODO_RACED)
    await lists.release_todo_slots(list_id=source, count=1)
    await _stay_in_live_list(caller, target)
    if stored is None:  # deleted (or moved again) right after the move
        raise NotFound(TODO_NOT_FOUND)
    return stored


@budgeted
async def delete_todo(
    *, caller: Caller, todo_id: PydanticObjectId, versions: list[int] | None
) -> None:
    """Delete the todo if the caller may change it, at one of `versions` when given, and give
    its list's slot back. Errors as writable_todo says."""
    list_id = await store.delete_todo(todo_id=todo_id, lists=caller.writable(), versions=versions)
    if list_id is None:
        await writable_todo(caller=caller, todo_id=todo_id, versions=versions)
        raise Conflict(TODO_RACED)
    await lists.release_todo_slots(list_id=list_id, count=1)


@budgeted
async def clear_completed(*, caller: Caller, list_id: PydanticObjectId | None) -> int:
    """Delete every completed todo of `list_id` (editor or owner of it), or of every list the
    caller may change; how many. Each list's slots are given back by its own count."""
    if list_id is not None:
        caller.require(list_id, WRITE)
        scope = [list_id]
    else:
        scope = caller.writable()
        if len(scope) > 1:
            # Only the lists that have some: one query instead of a write per list.
            scope = await store.lists_with_completed(lists=scope)
    deleted = 0
    for each in scope:
        count = await store.clear_completed(list_id=each)
        if count:
            await lists.release_todo_slots(list_id=each, count=count)
        deleted += count
    return deleted


# Called by lists (list deletion) and accounts (account deletion: the lists the user owns):
# tombstones every live todo of a list that is being deleted, without giving its slots back.
delete_todos_in_list = store.delete_todos_in_list
# Called by accounts at account deletion: the user's idempotency records, which hold copies
# of todos they created.
delete_idempotency_keys_of = store.delete_idempotency_keys_of

# Export and import (issue 14, transfer feature): many todos inserted into a list in one round
# trip (its slots taken by the caller), withdrawn again if the import fails, and a list's live
# todos read a batch at a time from one cursor.
insert_todos = store.insert_todos
delete_todos = store.delete_todos
LiveTodos = store.LiveTodos
