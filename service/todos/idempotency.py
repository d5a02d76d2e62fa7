"""Idempotency-Key records: who claimed a key, for which body, and the answer to replay.

The first request with a key claims it (a unique index on owner and key decides between
parallel requests); service.create_todo_once creates the todo with the id the claim chose up
front and records its answer here. Later requests with the key find the claim and replay the
answer, waiting briefly for it while the first request is still running.
"""

import asyncio
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from service.core.budget import budgeted, unbudgeted
from service.core.clock import as_utc
from service.core.store import id_of
from service.errors import Conflict
from service.todos.models import IDEMPOTENCY_KEY_TTL_SECONDS, IdempotencyKey

TTL = timedelta(seconds=IDEMPOTENCY_KEY_TTL_SECONDS)
# How long a retry waits for the answer of a first request that is still running.
WAIT_FOR_FIRST = 5.0
POLL_INTERVAL = 0.05
# A claim still unanswered after this long belongs to a request that died: take it over.
ABANDONED_AFTER = timedelta(seconds=60)


def request_hash(fields: dict[str, Any]) -> str:
    """A digest of the validated, normalised body: retries compare by it."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@budgeted
async def claim_key(
    *, owner_id: PydanticObjectId, key: str, digest: str, now: datetime
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
            if as_utc(existing.created_at) + TTL <= now:
                # The TTL monitor runs about once a minute: an expired key is treated as unused.
                await IdempotencyKey.get_pymongo_collection().delete_one({"_id": existing.id})
                continue
            return existing, False
        return record, True
    raise Conflict("Idempotency-Key is being reused too fast; retry")


def is_abandoned(record: IdempotencyKey, now: datetime) -> bool:
    """Whether the claim is unanswered and old enough that its request must have died."""
    return record.response_body is None and as_utc(record.created_at) + ABANDONED_AFTER <= now


@budgeted
async def record_answer(record: IdempotencyKey, body: dict[str, Any]) -> None:
    """Store the answer (the created todo as the API returned it) for retries to replay.

    Only the body: the status (201) and the Location (the todo's path) follow from it.
    """
    await IdempotencyKey.get_pymongo_collection().update_one(
        {"_id": record.id}, {"$set": {"response_body": body}}
    )


@budgeted
async def release_key(record: IdempotencyKey) -> None:
    """Free a claimed key whose create failed, so that a retry can try again."""
    await IdempotencyKey.get_pymongo_collection().delete_one({"_id": record.id})


# Unbudgeted: waiting for a concurrent first request is not database time (each read is).
@unbudgeted
async def await_answer(record: IdempotencyKey) -> IdempotencyKey | None:
    """The record once it has an answer, or as it is after WAIT_FOR_FIRST seconds; None if
    the first request failed (it released the key)."""
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
