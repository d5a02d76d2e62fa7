"""The change feed's pure parts: what each change-stream event becomes, and fan-out limits."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from beanie import PydanticObjectId

from service.db import MongoDatabase, init_db
from service.feed import (
    Change,
    ChangeFeed,
    InvalidResumeTokenError,
    ResumeTokenTooOldError,
    parse_resume_token,
    to_change,
)
from service.models import Todo
from tests.mongomock_compat import mock_database


@pytest.fixture(autouse=True)
async def beanie_models() -> None:
    """Todo documents need Beanie initialised, on any database."""
    await init_db(mock_database("feed"))


OWNER = PydanticObjectId()
TODO_ID = PydanticObjectId()
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def document(**fields: Any) -> dict[str, Any]:
    return {
        "_id": TODO_ID,
        "owner_id": OWNER,
        "text": "t",
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }


def event(
    operation: str, full: dict[str, Any] | None, updated: dict[str, Any] | None = None
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "_id": {"_data": "8200AB"},
        "operationType": operation,
        "fullDocument": full,
        "documentKey": {"_id": TODO_ID},
    }
    if updated is not None:
        raw["updateDescription"] = {"updatedFields": updated, "removedFields": []}
    return raw


def test_an_insert_is_created_with_the_todo() -> None:
    change = to_change(event("insert", document()))
    assert change is not None
    assert (change.kind, change.token, change.owner_id) == ("created", "8200AB", OWNER)
    assert change.data["id"] == str(TODO_ID)
    assert change.data["version"] == 1


def test_an_update_is_updated() -> None:
    change = to_change(event("update", document(version=2), {"text": "t", "version": 2}))
    assert change is not None
    assert change.kind == "updated"


def test_setting_deleted_at_is_deleted_with_the_exact_tombstone() -> None:
    # The post-image is read later and may show a newer version; the event's own fields win.
    full = document(version=5, deleted_at=NOW)
    change = to_change(event("update", full, {"deleted_at": NOW, "version": 3}))
    assert change is not None
    assert change.kind == "deleted"
    assert change.data == {
        "id": str(TODO_ID),
        "deleted": True,
        "deleted_at": "2026-11-25T09:00:00Z",
        "version": 3,
    }


def test_a_change_whose_todo_was_deleted_since_is_left_to_the_deletion_event() -> None:
    full = document(version=3, deleted_at=NOW)
    assert to_change(event("update", full, {"notes": "x", "version": 2})) is None
    assert to_change(event("insert", full)) is None


def test_a_change_whose_todo_is_gone_entirely_is_skipped() -> None:
    assert to_change(event("update", None, {"notes": "x"})) is None


@pytest.mark.parametrize("value", ["", "0", "xyz", "00" * 513, "8200AB\n"])
def test_only_hex_resume_tokens_parse(value: str) -> None:
    with pytest.raises(InvalidResumeTokenError):
        parse_resume_token(value)


def test_a_hex_resume_token_parses() -> None:
    assert parse_resume_token("8200ab") == {"_data": "8200ab"}


async def test_a_reader_too_slow_for_its_queue_is_closed() -> None:
    feed = ChangeFeed(queue_size=2)
    slow = feed.subscribe(OWNER)
    other = feed.subscribe(PydanticObjectId())
    change = Change("created", "01", OWNER, {})
    for _ in range(3):
        feed._dispatch(change)
    queued = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert queued == [change, change, None]
    assert other.queue.empty()
    assert feed.subscriber_count == 1


async def test_close_subscribers_ends_every_stream() -> None:
    feed = ChangeFeed()
    subscriptions = [feed.subscribe(OWNER) for _ in range(3)]
    feed.close_subscribers()
    assert [await asyncio.wait_for(s.queue.get(), 1) for s in subscriptions] == [None] * 3
    assert feed.subscriber_count == 0


@pytest.mark.wire_only
async def test_a_catch_up_beyond_its_limit_is_too_old(database: MongoDatabase) -> None:
    await init_db(database)
    feed = ChangeFeed(catch_up_limit=2)
    await feed.start(Todo.get_pymongo_collection())
    try:
        assert feed.available
        token = feed.subscribe(OWNER).token
        assert token is not None
        await Todo.insert_many([Todo(owner_id=OWNER, text=f"t{i}") for i in range(3)])
        with pytest.raises(ResumeTokenTooOldError):
            await feed.catch_up(OWNER, token)
        await Todo.insert_many([Todo(owner_id=PydanticObjectId(), text="someone else's")])
        roomier = ChangeFeed(catch_up_limit=3)
        await roomier.start(Todo.get_pymongo_collection())
        try:
            changes = await roomier.catch_up(OWNER, token)
        finally:
            await roomier.stop()
        # Only the owner's changes, in order.
        assert [(c.kind, c.data["text"]) for c in changes] == [
            ("created", f"t{i}") for i in range(3)
        ]
    finally:
        await feed.stop()
    assert not feed.available
