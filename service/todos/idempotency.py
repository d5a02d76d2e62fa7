"""Idempotent creates: an Idempotency-Key makes a retried POST replay instead of repeat.

The first request with a key claims it (a unique index on owner and key decides between
parallel requests), creates the todo with an id chosen up front, and stores its answer. Later
requests with the key and the same body replay that answer; with another body they are an
error. Requests that arrive while the first is still running wait briefly for its answer.
"""

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from service.core.budget import budgeted, unbudgeted
from service.core.clock import utc_now
from service.core.store import id_of
from service.errors import Conflict, UnprocessableContent
from service.todos import store
from service.todos.models import IDEMPOTENCY_KEY_TTL_SECONDS, IdempotencyKey, Todo

TTL = timedelta(seconds=IDEMPOTENCY_KEY_TTL_SECONDS)
# How long a retry waits for the answer of a first request that is still running.
WAIT_FOR_FIRST = 5.0
POLL_INTERVAL = 0.05
# A claim still unanswered after this long belongs to a request that died: take it over.
ABANDONED_AFTER = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class CreateAnswer:
    status_code: int
    body: dict[str, Any]
    location: str
    replayed: bool


def request_hash(fields: dict[str, Any]) -> str:
    """A digest of the validated, normalised body: retries compare by it."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@budgeted
async def _claim(
    owner_id: PydanticObjectId, key: str, digest: str, now: datetime
) -> tuple[IdempotencyKey, bool]:
    """The key's record, and whether this request just claimed it."""
    for _ in range(3):
        record = IdempotencyKey(
            owner_id=owner_id,
            key=key,
            request_hash=digest,
            todo_id=PydanticObjectId(),
            created_at=now,
        )
        try:
            await record.insert()
        except DuplicateKeyError:
            existing = await IdempotencyKey.find_one({"owner_id": owner_id, "key": key})
            if existing is None:
                continue  # expired and swept in between: claim again
            if existing.created_at.replace(tzinfo=now.tzinfo) + TTL <= now:
                # The TTL monitor runs about once a minute: an expired key is treated as unused.
                await IdempotencyKey.get_pymongo_collection().delete_one({"_id": existing.id})
                continue
            return existing, False
        return record, True
    raise Conflict("Idempotency-Key is being reused too fast; retry")


async def _await_answer(record: IdempotencyKey) -> IdempotencyKey | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_FIRST
    current: IdempotencyKey | None = record
    while current is not None and current.response_body is None and loop.time() < deadline:
        await asyncio.sleep(POLL_INTERVAL)
        current = await _read_record(id_of(record))
    return current


@budgeted
async def _read_record(record_id: PydanticObjectId) -> IdempotencyKey | None:
    return await IdempotencyKey.get(record_id)


@budgeted
async def _create(
    record: IdempotencyKey,
    fields: dict[str, Any],
    render: Callable[[Todo], dict[str, Any]],
    location: str,
    max_todos: int,
) -> CreateAnswer:
    try:
        todo = await store.create_todo(
            owner_id=record.owner_id, fields=fields, max_todos=max_todos, todo_id=record.todo_id
        )
    except DuplicateKeyError:
        # A taken-over claim whose first request did insert the todo before dying.
        existing = await store.get_todo(owner_id=record.owner_id, todo_id=record.todo_id)
        if existing is None:
            raise
        todo = existing
    except BaseException:
        # Free the key so that a retry can try again.
        await IdempotencyKey.get_pymongo_collection().delete_one({"_id": record.id})
        raise
    body = render(todo)
    await IdempotencyKey.get_pymongo_collection().update_one(
        {"_id": record.id},
        {"$set": {"status_code": 201, "response_body": body, "location": location}},
    )
    return CreateAnswer(status_code=201, body=body, location=location, replayed=False)


# Unbudgeted as a whole: each database call in it is budgeted, but waiting for a concurrent
# first request is not database time.
@unbudgeted
async def create_todo_once(
    *,
    owner_id: PydanticObjectId,
    key: str,
    fields: dict[str, Any],
    max_todos: int,
    render: Callable[[Todo], dict[str, Any]],
    location_of: Callable[[PydanticObjectId], str],
    now: datetime | None = None,
) -> CreateAnswer:
    """Create the todo the first time this owner sends `key`; replay that answer afterwards.

    UnprocessableContent if the key was used with another body; Conflict if the first request
    with the key is still running after a few seconds.
    """
    now = now or utc_now()
    digest = request_hash(fields)
    record, claimed = await _claim(owner_id, key, digest, now)
    if record.request_hash != digest:
        raise UnprocessableContent("This Idempotency-Key was used with a different request body")
    if claimed:
        return await _create(record, fields, render, location_of(record.todo_id), max_todos)
    abandoned = record.created_at.replace(tzinfo=now.tzinfo) + ABANDONED_AFTER <= now
    if record.response_body is None and abandoned:
        return await _create(record, fields, render, location_of(record.todo_id), max_todos)
    answered = await _await_answer(record)
    if answered is None:
        raise Conflict("The first request with this Idempotency-Key failed; retry")
    if answered.response_body is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry")
    return CreateAnswer(
        status_code=answered.status_code or 201,
        body=answered.response_body,
        location=answered.location or location_of(answered.todo_id),
        replayed=True,
    )
