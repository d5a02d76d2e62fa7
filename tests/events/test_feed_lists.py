"""Membership and list changes reach open streams at once: who reads what, and list events.

The feed's handling of each change-stream event is driven here with the events the worker's
access stream (service/core/watch.py) delivers (both tiers: a membership update reads the
membership by id); the last tests
write through the lists store and watch the real change streams (wire tier).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from beanie import PydanticObjectId
from pymongo.errors import OperationFailure

from service.accounts.models import Session
from service.core.clock import utc_now
from service.core.watch import AccessWatcher
from service.db import MongoDatabase, init_db
from service.events.changes import Change, ListEvent, TodoEvent
from service.events.feed import ChangeFeed, Item, Subscription, _Watched
from service.lists import store as lists_store
from service.lists.models import Membership, Role, TodoList
from service.todos.models import Todo

ALICE, BOB, CAROL = PydanticObjectId(), PydanticObjectId(), PydanticObjectId()
# Each user's default list has their id.
SHARED = PydanticObjectId()
WATCHED = _Watched(sessions="sessions", memberships="memberships", lists="lists")


def control_feed() -> ChangeFeed:
    """A feed that takes events as its control stream delivers them (no stream opened)."""
    feed = ChangeFeed()
    feed._watched = WATCHED
    return feed


def control_event(
    collection: str,
    operation: str,
    key: Any,
    *,
    document: dict[str, Any] | None = None,
    updated: dict[str, Any] | None = None,
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "_id": {"_data": "82CC"},
        "operationType": operation,
        "ns": {"db": "test", "coll": collection},
        "documentKey": {"_id": key},
    }
    if document is not None:
        raw["fullDocument"] = document
    if updated is not None:
        raw["updateDescription"] = {"updatedFields": updated, "removedFields": []}
    return raw


async def membership_added(
    feed: ChangeFeed, list_id: PydanticObjectId, user_id: PydanticObjectId, role: Role
) -> None:
    document = {
        "_id": PydanticObjectId(),
        "list_id": list_id,
        "user_id": user_id,
        "role": role.value,
        "removed_at": None,
    }
    await feed._on_control(
        control_event("memberships", "insert", document["_id"], document=document)
    )


async def membership_updated(
    feed: ChangeFeed,
    list_id: PydanticObjectId,
    user_id: PydanticObjectId,
    role: Role,
    /,
    **updated: Any,
) -> None:
    """The update as its description has it (no list, no user: the feed reads them); the
    membership as stored has `role`, then `updated`."""
    stored = Membership(list_id=list_id, user_id=user_id, **{"role": role, **updated})
    await stored.insert()
    await feed._on_control(control_event("memberships", "update", stored.id, updated=updated))


def todo_in(list_id: PydanticObjectId, text: str) -> TodoEvent:
    raw = {
        "_id": {"_data": "8200AB"},
        "operationType": "insert",
        "fullDocument": {
            "_id": PydanticObjectId(),
            "list_id": list_id,
            "created_by": ALICE,
            "text": text,
            "version": 1,
            "created_at": utc_now(),
            "updated_at": utc_now(),
        },
    }
    parsed = TodoEvent.of(raw)
    assert parsed is not None
    return parsed


def queued(subscription: Subscription) -> list[Item | None]:
    return [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]


def told(subscription: Subscription) -> list[tuple[str, dict[str, Any]]]:
    """What the stream would send: each event's kind and data."""
    return [
        (item.kind, item.data)
        for item in queued(subscription)
        if isinstance(item, ListEvent | Change)
    ]


@pytest.fixture
async def beanie(database: MongoDatabase) -> None:
    await init_db(database)


async def test_a_new_member_is_told_and_reads_the_list_at_once(beanie: None) -> None:
    feed = control_feed()
    owner = feed.subscribe(ALICE, lists=[ALICE, SHARED])
    member = feed.subscribe(BOB, lists=[BOB])
    stranger = feed.subscribe(CAROL, lists=[CAROL])
    await membership_added(feed, SHARED, BOB, Role.VIEWER)
    added = {"list_id": str(SHARED), "user_id": str(BOB), "role": "viewer"}
    assert told(owner) == told(member) == [("member_added", added)]
    assert member.reads(SHARED)
    # Its todos from now on, without reconnecting.
    feed._dispatch(todo_in(SHARED, "for the new member"))
    ((kind, data),) = told(member)
    assert (kind, data["text"]) == ("created", "for the new member")
    assert told(stranger) == []


async def test_a_removed_member_gets_list_removed_then_nothing_more_of_it(beanie: None) -> None:
    feed = control_feed()
    owner = feed.subscribe(ALICE, lists=[ALICE, SHARED])
    member = feed.subscribe(BOB, lists=[BOB, SHARED])
    await membership_updated(feed, SHARED, BOB, Role.EDITOR, removed_at=utc_now())
    assert told(member) == [("list_removed", {"id": str(SHARED)})]
    # The others are told who went; the one who went isn't told twice.
    assert told(owner) == [("member_removed", {"list_id": str(SHARED), "user_id": str(BOB)})]
    feed._dispatch(todo_in(SHARED, "after the removal"))
    feed._dispatch(todo_in(BOB, "their own"))
    # Their other lists go on.
    assert [data["text"] for _, data in told(member)] == ["their own"]
    assert [data["text"] for _, data in told(owner)] == ["after the removal"]


async def test_a_change_queued_before_a_removal_is_not_sent_after_it(beanie: None) -> None:
    feed = control_feed()
    member = feed.subscribe(BOB, lists=[BOB, SHARED])
    feed._dispatch(todo_in(SHARED, "queued, not yet sent"))
    await membership_updated(feed, SHARED, BOB, Role.VIEWER, removed_at=utc_now())
    change, removed = queued(member)
    assert isinstance(change, Change)
    assert isinstance(removed, ListEvent)
    # The response skips the changes of lists the stream no longer reads (events/sse.py).
    assert not member.reads(change.list_id)


async def test_a_member_brought_back_is_added_again(beanie: None) -> None:
    feed = control_feed()
    member = feed.subscribe(BOB, lists=[BOB])
    # Re-invited after leaving: the same membership comes back (add_member).
    await membership_updated(feed, SHARED, BOB, Role.EDITOR, removed_at=None)
    added = {"list_id": str(SHARED), "user_id": str(BOB), "role": "editor"}
    assert told(member) == [("member_added", added)]
    assert member.reads(SHARED)


async def test_a_role_change_is_told_to_that_member_only(beanie: None) -> None:
    feed = control_feed()
    owner = feed.subscribe(ALICE, lists=[ALICE, SHARED])
    member = feed.subscribe(BOB, lists=[BOB, SHARED])
    await membership_updated(feed, SHARED, BOB, Role.EDITOR, role=Role.EDITOR.value)
    assert told(member) == [("list_updated", {"id": str(SHARED), "role": "editor"})]
    assert told(owner) == []
    assert member.reads(SHARED)


async def test_a_new_list_is_created_for_its_owner_who_reads_it_at_once() -> None:
    feed = control_feed()
    owner = feed.subscribe(ALICE, lists=[ALICE])
    other = feed.subscribe(BOB, lists=[BOB])
    stored = TodoList(id=SHARED, owner_id=ALICE, name="Groceries").model_dump(by_alias=True)
    await feed._on_control(control_event("lists", "insert", SHARED, document=stored))
    ((kind, data),) = told(owner)
    assert (kind, data["id"], data["name"], data["role"]) == (
        "list_created",
        str(SHARED),
        "Groceries",
        "owner",
    )
    assert owner.reads(SHARED)
    # Its owner membership follows: nothing more to say.
    await membership_added(feed, SHARED, ALICE, Role.OWNER)
    assert told(owner) == []
    assert told(other) == []


async def test_a_renamed_list_is_updated_for_its_members_only() -> None:
    feed = control_feed()
    owner = feed.subscribe(ALICE, lists=[ALICE, SHARED])
    member = feed.subscribe(BOB, lists=[BOB, SHARED])
    stranger = feed.subscribe(CAROL, lists=[CAROL])
    updated = {"name": "Shopping", "version": 2, "updated_at": utc_now()}
    await feed._on_control(control_event("lists", "update", SHARED, updated=updated))
    for reader in (owner, member):
        ((kind, data),) = told(reader)
        assert (kind, data["id"], data["name"], data["version"]) == (
            "list_updated",
            str(SHARED),
            "Shopping",
            2,
        )
    assert told(stranger) == []


@pytest.mark.parametrize("operation", ["update", "delete"])
async def test_a_deleted_list_is_removed_for_every_member(operation: str) -> None:
    feed = control_feed()
    owner = feed.subscribe(ALICE, lists=[ALICE, SHARED])
    member = feed.subscribe(BOB, lists=[BOB, SHARED])
    updated = {"deleted_at": utc_now(), "version": 3} if operation == "update" else None
    await feed._on_control(control_event("lists", operation, SHARED, updated=updated))
    for reader in (owner, member):
        assert told(reader) == [("list_removed", {"id": str(SHARED)})]
        assert not reader.reads(SHARED)
    feed._dispatch(todo_in(SHARED, "too late"))
    assert told(owner) == told(member) == []


async def test_membership_changes_while_a_stream_opens_apply_over_its_read(beanie: None) -> None:
    feed = control_feed()
    opening = feed.subscribe(BOB)
    other_list = PydanticObjectId()
    # Seen between the subscription and the read of its memberships (which may or may not
    # have seen them): each is the latest word on its list.
    await membership_updated(feed, SHARED, BOB, Role.VIEWER, removed_at=utc_now())
    await membership_added(feed, other_list, BOB, Role.EDITOR)
    await feed._on_control(control_event("lists", "delete", ALICE))
    assert feed.load(opening, [BOB, SHARED, ALICE]) == {BOB, other_list}
    # `ready` lists them: nothing else to say.
    assert told(opening) == []


async def test_a_revoked_or_deleted_session_ends_its_streams() -> None:
    feed = control_feed()
    streams = [feed.subscribe(BOB, session, lists=[BOB]) for session in ("s1", "s2", "s3")]
    await feed._on_control(control_event("sessions", "update", "s1", updated={"revoked": True}))
    await feed._on_control(control_event("sessions", "delete", "s2"))
    assert [queued(stream) for stream in streams] == [[None], [None], []]
    assert [stream.revoked for stream in streams] == [True, True, False]


async def test_changes_the_access_stream_carries_for_the_cache_end_nothing() -> None:
    """The worker's access stream also brings what the authentication cache needs (a
    membership's other fields, a user changed): the feed acts on its own changes only."""
    feed = control_feed()
    stream = feed.subscribe(BOB, "s1", lists=[BOB, SHARED])
    await feed._on_control(control_event("sessions", "update", "s1", updated={"ip": "x"}))
    # Neither its role nor its end: nothing to read, nothing told.
    await feed._on_control(
        control_event("memberships", "update", PydanticObjectId(), updated={"added_at": 1})
    )
    await feed._on_control(control_event("users", "update", BOB, updated={"fname": "B"}))
    assert queued(stream) == []
    assert not stream.revoked


class ScriptedStream:
    """An access stream that delivers the given events, then waits."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self.alive = True
        self.resume_token: dict[str, str] = {"_data": "82CC"}

    async def try_next(self) -> dict[str, Any] | None:
        if self._events:
            return self._events.pop(0)
        await asyncio.sleep(0.01)
        return None

    async def close(self) -> None:
        self.alive = False


class ForgetfulDatabase:
    """A database whose change streams can't resume (their history is gone)."""

    def __init__(self) -> None:
        self.opened: list[Any] = []

    async def watch(self, pipeline: list[dict[str, Any]], **options: Any) -> ScriptedStream:
        if options.get("resume_after") is not None:
            raise OperationFailure("history lost", code=286)
        self.opened.append(options)
        return ScriptedStream([])


async def test_an_access_stream_that_cant_resume_ends_every_stream_and_starts_afresh() -> None:
    feed = control_feed()
    watcher = AccessWatcher()
    watcher.subscribe(feed)
    database = ForgetfulDatabase()
    watcher._database = database  # type: ignore[assignment]  # only watch() is called
    watcher._token = {"_data": "82CC"}
    streams = [feed.subscribe(user, lists=[user]) for user in (ALICE, BOB)]
    await watcher._open()
    assert isinstance(watcher._stream, ScriptedStream)
    # What changed while it was away is lost: every client reconnects (session checked, lists
    # read again) with Last-Event-ID.
    assert [queued(stream) for stream in streams] == [[None], [None]]
    assert feed.subscriber_count == 0
    assert watcher._token == {"_data": "82CC"}  # the new stream's
    assert database.opened == [{"max_await_time_ms": 500}]


async def test_a_change_the_feed_cant_read_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = control_feed()
    stream = feed.subscribe(BOB, "s1", lists=[BOB])
    malformed = control_event("memberships", "insert", PydanticObjectId(), document={"role": 1})
    revoked = control_event("sessions", "delete", "s1")
    watcher = AccessWatcher()
    watcher.subscribe(feed)
    watcher._stream = ScriptedStream([malformed, revoked])  # type: ignore[assignment]  # duck-typed
    task = asyncio.create_task(watcher._run())
    try:
        # The watcher goes on: the revocation after it still ends the stream.
        assert await asyncio.wait_for(stream.queue.get(), 5) is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert stream.revoked
    assert "could not read" in caplog.text


# ---- on the real change streams ----


@asynccontextmanager
async def started_feed() -> AsyncIterator[ChangeFeed]:
    feed, watcher = ChangeFeed(), AccessWatcher()
    feed.watch_access(
        watcher,
        sessions=Session.get_pymongo_collection(),
        memberships=Membership.get_pymongo_collection(),
        lists=TodoList.get_pymongo_collection(),
    )
    await watcher.start(Todo.get_pymongo_collection().database)
    await feed.start(Todo.get_pymongo_collection())
    try:
        assert feed.available
        assert watcher.available
        yield feed
    finally:
        await feed.stop()
        await watcher.stop()


async def next_item(subscription: Subscription) -> Item:
    """The stream's next event, list events and todo changes alike."""
    item = await asyncio.wait_for(subscription.queue.get(), 10)
    assert item is not None, "the stream was closed"
    return item


async def insert_todo(list_id: PydanticObjectId, text: str) -> None:
    await Todo(list_id=list_id, created_by=ALICE, sync_lists=[list_id], text=text).insert()


@pytest.mark.wire_only
async def test_membership_changes_reach_open_streams_through_the_change_streams(
    beanie: None,
) -> None:
    now = utc_now()
    for user_id in (ALICE, BOB):
        await lists_store.create_default_list(user_id=user_id, now=now)
    async with started_feed() as feed:
        owner = feed.subscribe(ALICE, lists=[ALICE])
        member = feed.subscribe(BOB, lists=[BOB])
        created = await lists_store.create_list(
            owner_id=ALICE, name="Shared", max_lists=10, now=now
        )
        list_id = PydanticObjectId(created["_id"])
        item = await next_item(owner)
        assert (item.kind, item.data["id"]) == ("list_created", str(list_id))

        await lists_store.add_member(
            list_id=list_id, user_id=BOB, role=Role.VIEWER, max_members=10, now=now
        )
        item = await next_item(member)
        assert (item.kind, item.data["user_id"]) == ("member_added", str(BOB))
        await insert_todo(list_id, "shared")
        item = await next_item(member)
        assert (item.kind, item.data["text"]) == ("created", "shared")

        await Membership.get_pymongo_collection().update_one(
            {"list_id": list_id, "user_id": BOB},
            {"$set": {"removed_at": utc_now(), "updated_at": utc_now()}},
        )
        item = await next_item(member)
        assert (item.kind, item.data) == ("list_removed", {"id": str(list_id)})
        await insert_todo(list_id, "after the removal")
        await insert_todo(BOB, "their own")
        item = await next_item(member)
        assert (item.kind, item.data["text"]) == ("created", "their own")
