"""The change feed's pure parts: what each change-stream event becomes, and fan-out limits."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import Timestamp
from pymongo import AsyncMongoClient, monitoring

from service.accounts.models import Session, User
from service.accounts.tokens import new_session_id
from service.core.clock import utc_now
from service.core.store import id_of
from service.db import MongoDatabase, init_db
from service.events import store as event_store
from service.events.feed import (
    CATCH_UP_BATCH,
    CatchUp,
    Change,
    ChangeFeed,
    InvalidResumeTokenError,
    UserStreamsFullError,
    WorkerStreamsFullError,
    parse_resume_token,
    to_change,
)
from service.todos.models import Todo
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


def test_a_change_carries_its_cluster_time() -> None:
    raw = event("insert", document())
    raw["clusterTime"] = Timestamp(1_800_000_000, 7)
    change = to_change(raw)
    assert change is not None
    assert change.cluster_time == Timestamp(1_800_000_000, 7)


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


async def test_a_revoked_session_ends_only_its_own_streams_saying_so() -> None:
    feed = ChangeFeed()
    revoked = [feed.subscribe(OWNER, "session-a") for _ in range(2)]
    other = feed.subscribe(OWNER, "session-b")
    feed.revoke_session("session-a")
    for subscription in revoked:
        assert await asyncio.wait_for(subscription.queue.get(), 1) is None
        assert subscription.revoked
    assert other.queue.empty()
    assert not other.revoked
    assert feed.subscriber_count == 1


async def test_a_worker_serves_at_most_its_streams() -> None:
    feed = ChangeFeed(max_streams_per_worker=2)
    feed.subscribe(OWNER)
    feed.subscribe(PydanticObjectId())
    with pytest.raises(WorkerStreamsFullError):
        feed.subscribe(OWNER)
    assert feed.subscriber_count == 2


async def test_open_refuses_a_user_past_their_streams_and_frees_slots_on_close(
    database: MongoDatabase,
) -> None:
    await init_db(database)
    feed = ChangeFeed(max_streams_per_user=2)
    opened = [await feed.open(OWNER, f"s{i}") for i in range(2)]
    with pytest.raises(UserStreamsFullError):
        await feed.open(OWNER, "s3")
    assert feed.subscriber_count == 2  # the refused one isn't left subscribed
    feed.unsubscribe(opened[0])
    await asyncio.gather(*feed._cleanups)  # the slot is freed in the background
    assert (await feed.open(OWNER, "s4")).slot is not None


async def changes_of(catch_up: CatchUp) -> list[Change]:
    return [change async for change in catch_up.changes()]


@asynccontextmanager
async def started_feed(**options: Any) -> AsyncIterator[ChangeFeed]:
    feed = ChangeFeed(**options)
    await feed.start(Todo.get_pymongo_collection())
    try:
        assert feed.available
        yield feed
    finally:
        await feed.stop()
    assert not feed.available


async def caught_up(feed: ChangeFeed) -> None:
    """Wait until the feed's shared stream has read everything written so far."""
    marker = Todo(owner_id=PydanticObjectId(), text="marker")
    await marker.insert()
    watcher = feed.subscribe(marker.owner_id)
    await marker.set({"text": "seen"})
    async with asyncio.timeout(10):
        while True:
            change = await watcher.queue.get()
            if change is not None and change.kind == "updated":
                break
    feed.unsubscribe(watcher)


@pytest.mark.wire_only
async def test_a_catch_up_stops_after_its_limit(database: MongoDatabase) -> None:
    await init_db(database)
    async with started_feed(catch_up_limit=2) as feed:
        token = feed.subscribe(OWNER).token
        assert token is not None
        await Todo.insert_many([Todo(owner_id=OWNER, text=f"t{i}") for i in range(3)])
        await Todo.insert_many([Todo(owner_id=PydanticObjectId(), text="someone else's")])
        catch_up = await feed.catch_up(OWNER, token)
        # Only the owner's changes, in order, up to the limit; the client resumes after.
        sent = await changes_of(catch_up)
        assert [(c.kind, c.data["text"]) for c in sent] == [("created", "t0"), ("created", "t1")]
        assert catch_up.truncated
        feed.discard(catch_up)
        rest = await feed.catch_up(OWNER, sent[-1].token)
        assert [c.data["text"] for c in await changes_of(rest)] == ["t2"]
        assert not rest.truncated
        feed.discard(rest)


@pytest.mark.wire_only
async def test_the_switch_from_catch_up_to_live_loses_and_repeats_nothing(
    database: MongoDatabase,
) -> None:
    await init_db(database)
    async with started_feed() as feed:
        before = feed.subscribe(PydanticObjectId()).token  # the client's Last-Event-ID
        assert before is not None
        missed = [Todo(owner_id=OWNER, text=f"missed {i}") for i in range(2)]
        await Todo.insert_many(missed)
        await caught_up(feed)
        subscription = feed.subscribe(OWNER)  # the live queue starts here
        overlap = [Todo(owner_id=OWNER, text=f"overlap {i}") for i in range(3)]
        for todo in overlap:
            await todo.insert()
        await caught_up(feed)
        assert subscription.queue.qsize() == 3  # queued live, and also in the catch-up
        catch_up = await feed.catch_up(OWNER, before)
        received = [c.data["text"] for c in await changes_of(catch_up)]
        await Todo(owner_id=OWNER, text="after").insert()
        await caught_up(feed)
        while not subscription.queue.empty():
            change = subscription.queue.get_nowait()
            assert change is not None
            if not catch_up.covers(change):
                received.append(change.data["text"])
        feed.discard(catch_up)
    assert received == [todo.text for todo in missed + overlap] + ["after"]


class BatchCounter(monitoring.CommandListener):
    """Counts the reads of catch-up change streams (those filtered by owner) and the
    largest batch the server returned to one."""

    def __init__(self) -> None:
        self.reads = 0
        self.largest = 0
        self._opening: set[int] = set()
        self._cursors: set[int] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        catching_up = "fullDocument.owner_id" in str(command.get("pipeline"))
        if (event.command_name == "aggregate" and catching_up) or (
            event.command_name == "getMore" and command["getMore"] in self._cursors
        ):
            self._opening.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id not in self._opening:
            return
        self._opening.discard(event.request_id)
        cursor = event.reply["cursor"]
        self._cursors.add(cursor["id"])
        self.reads += 1
        self.largest = max(self.largest, len(cursor.get("firstBatch", cursor.get("nextBatch"))))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._opening.discard(event.request_id)


@pytest.mark.wire_only
async def test_a_catch_up_holds_one_batch_at_a_time(wire_url: str) -> None:
    counter = BatchCounter()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        wire_url, tz_aware=True, event_listeners=[counter]
    )
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        await init_db(client[name])
        backlog = 2 * CATCH_UP_BATCH + 50
        async with started_feed(catch_up_limit=backlog) as feed:
            token = feed.subscribe(OWNER).token
            assert token is not None
            await Todo.insert_many([Todo(owner_id=OWNER, text=f"t{i}") for i in range(backlog)])
            catch_up = await feed.catch_up(OWNER, token)
            assert counter.reads == 1  # the first batch, read before answering (400/410)
            sent = 0
            async for _ in catch_up.changes():
                sent += 1
                # Read lazily: a batch is fetched only once the previous one was sent.
                assert counter.reads == -(-sent // CATCH_UP_BATCH)
            assert sent == backlog
            assert counter.largest == CATCH_UP_BATCH
            feed.discard(catch_up)
    finally:
        await client.drop_database(name)
        await client.close()


# ---- stream slots (MAX_STREAMS_PER_USER across workers) ----


async def test_parallel_opens_take_at_most_the_users_slots(database: MongoDatabase) -> None:
    await init_db(database)
    now = utc_now()
    taken = await asyncio.gather(
        *(
            event_store.take_slot(user_id=OWNER, max_per_user=5, worker=f"w{i % 2}", now=now)
            for i in range(8)
        )
    )
    leases = [lease for lease in taken if lease is not None]
    assert len(leases) == 5
    assert len({lease.slot_id for lease in leases}) == 5
    # Other users have slots of their own.
    assert await event_store.take_slot(
        user_id=PydanticObjectId(), max_per_user=5, worker="w0", now=now
    )
    # A freed slot can be taken again.
    await event_store.release_slot(slot=leases[0])
    assert await event_store.take_slot(user_id=OWNER, max_per_user=5, worker="w0", now=now)
    assert await event_store.take_slot(user_id=OWNER, max_per_user=5, worker="w0", now=now) is None


async def test_a_crashed_workers_slots_free_themselves(database: MongoDatabase) -> None:
    await init_db(database)
    now = utc_now()
    for _ in range(2):
        assert await event_store.take_slot(user_id=OWNER, max_per_user=2, worker="gone", now=now)
    assert await event_store.take_slot(user_id=OWNER, max_per_user=2, worker="w", now=now) is None
    # The worker that held them stopped renewing: once the lease runs out they are free.
    later = now + event_store.LEASE + timedelta(seconds=1)
    assert await event_store.take_slot(user_id=OWNER, max_per_user=2, worker="w", now=later)


async def test_renewed_slots_stay_held(database: MongoDatabase) -> None:
    await init_db(database)
    now = utc_now()
    assert await event_store.take_slot(user_id=OWNER, max_per_user=1, worker="alive", now=now)
    await event_store.renew_slots(worker="alive", now=now + event_store.LEASE)
    later = now + event_store.LEASE + timedelta(seconds=1)
    assert await event_store.take_slot(user_id=OWNER, max_per_user=1, worker="w", now=later) is None


# ---- the session a stream runs on ----


async def test_a_stream_needs_an_active_session_of_an_existing_user(
    database: MongoDatabase,
) -> None:
    await init_db(database)
    now = utc_now()
    user = User(email="feed@example.com", fname="F", lname="S", hashed_password="x")
    await user.insert()

    async def session(**fields: Any) -> str:
        values: dict[str, Any] = {"expires_at": now + timedelta(days=1), **fields}
        stored = Session(
            id=new_session_id(),
            user_id=id_of(user),
            created_at=now,
            last_used_at=now,
            refresh_hash=uuid.uuid4().hex,
            **values,
        )
        await stored.insert()
        return stored.id

    active = await session()
    assert await event_store.session_expiry(session_id=active, user_id=id_of(user), now=now) == (
        now + timedelta(days=1)
    )
    for ended in [await session(revoked=True), await session(expires_at=now)]:
        assert (
            await event_store.session_expiry(session_id=ended, user_id=id_of(user), now=now) is None
        )
    # Someone else's session, or a deleted user's, doesn't count either.
    assert await event_store.session_expiry(session_id=active, user_id=OWNER, now=now) is None
    await user.delete()
    assert await event_store.session_expiry(session_id=active, user_id=id_of(user), now=now) is None
