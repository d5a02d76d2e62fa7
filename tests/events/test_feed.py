"""The change feed's fan-out: who gets each todo change, limits, subscriptions while they
open, catch-up, stream slots and the session check."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from pymongo import AsyncMongoClient, monitoring

from service.accounts.models import Session, User
from service.accounts.tokens import new_session_id
from service.core.clock import utc_now
from service.core.store import id_of
from service.db import MongoDatabase, init_db
from service.events import feed as feed_module
from service.events import store as event_store
from service.events.changes import Change, TodoEvent
from service.events.feed import (
    CATCH_UP_BATCH,
    CatchUp,
    ChangeFeed,
    InvalidResumeTokenError,
    Subscription,
    UserStreamsFullError,
    WorkerStreamsFullError,
    parse_resume_token,
)
from service.lists.deps import MEMBERSHIPS
from service.lists.models import Membership, Role
from service.lists.service import readable_lists
from service.todos.models import Todo
from tests.mongomock_compat import mock_database


@pytest.fixture(autouse=True)
async def beanie_models() -> None:
    """Todo documents need Beanie initialised, on any database."""
    await init_db(mock_database("feed"))


OWNER = PydanticObjectId()
# The lists an owner's todos are in, in these tests: their default list has their id.
LIST = OWNER
OTHER_LIST = PydanticObjectId()


def todo_event(list_id: PydanticObjectId = LIST, text: str = "t") -> TodoEvent:
    """The meaning of a todo's insert into `list_id`."""
    raw = {
        "_id": {"_data": "8200AB"},
        "operationType": "insert",
        "fullDocument": {
            "_id": PydanticObjectId(),
            "list_id": list_id,
            "created_by": OWNER,
            "text": text,
            "version": 1,
            "created_at": utc_now(),
            "updated_at": utc_now(),
        },
    }
    parsed = TodoEvent.of(raw)
    assert parsed is not None
    return parsed


def queued(subscription: Subscription) -> list[Any]:
    return [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]


@pytest.mark.parametrize("value", ["", "0", "xyz", "00" * 513, "8200AB\n"])
def test_only_hex_resume_tokens_parse(value: str) -> None:
    with pytest.raises(InvalidResumeTokenError):
        parse_resume_token(value)


def test_a_hex_resume_token_parses() -> None:
    assert parse_resume_token("8200ab") == {"_data": "8200ab"}


async def test_a_todo_change_reaches_the_readers_of_its_list_only() -> None:
    feed = ChangeFeed()
    owner = feed.subscribe(OWNER, lists=[LIST])
    viewer = feed.subscribe(PydanticObjectId(), lists=[OTHER_LIST, LIST])
    stranger = feed.subscribe(PydanticObjectId(), lists=[OTHER_LIST])
    feed._dispatch(todo_event(LIST, "shared"))
    for reader in (owner, viewer):
        (change,) = queued(reader)
        assert (change.kind, change.data["text"], change.list_id) == ("created", "shared", LIST)
    assert stranger.queue.empty()


async def test_a_reader_too_slow_for_its_queue_is_closed() -> None:
    feed = ChangeFeed(queue_size=2)
    slow = feed.subscribe(OWNER, lists=[LIST])
    other = feed.subscribe(PydanticObjectId(), lists=[OTHER_LIST])
    for _ in range(3):
        feed._dispatch(todo_event(LIST))
    assert [item is None for item in queued(slow)] == [False, False, True]
    assert other.queue.empty()
    assert feed.subscriber_count == 1


async def test_changes_made_while_a_stream_opens_are_told_once_its_lists_are_known() -> None:
    feed = ChangeFeed()
    opening = feed.subscribe(OWNER)  # its memberships not read yet
    feed._dispatch(todo_event(LIST, "mine"))
    feed._dispatch(todo_event(OTHER_LIST, "not mine"))
    assert opening.queue.empty()
    assert feed.load(opening, [LIST]) == {LIST}
    (change,) = queued(opening)
    assert change.data["text"] == "mine"
    feed._dispatch(todo_event(LIST, "later"))
    assert [change.data["text"] for change in queued(opening)] == ["later"]


async def test_a_stream_still_opening_holds_at_most_its_queue() -> None:
    feed = ChangeFeed(queue_size=2)
    opening = feed.subscribe(OWNER)
    for _ in range(3):
        feed._dispatch(todo_event(LIST))
    assert queued(opening) == [None]
    assert feed.subscriber_count == 0
    feed.load(opening, [LIST])  # too late: it was closed, and stays out of the fan-out
    feed._dispatch(todo_event(LIST))
    assert opening.queue.empty()


async def test_close_subscribers_ends_every_stream() -> None:
    feed = ChangeFeed()
    subscriptions = [feed.subscribe(OWNER, lists=[LIST]) for _ in range(3)]
    feed.close_subscribers()
    assert [await asyncio.wait_for(s.queue.get(), 1) for s in subscriptions] == [None] * 3
    assert feed.subscriber_count == 0
    feed._dispatch(todo_event(LIST))
    assert all(s.queue.empty() for s in subscriptions)


async def test_a_revoked_session_ends_only_its_own_streams_saying_so() -> None:
    feed = ChangeFeed()
    revoked = [feed.subscribe(OWNER, "session-a", lists=[LIST]) for _ in range(2)]
    other = feed.subscribe(OWNER, "session-b", lists=[LIST])
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


def new_todo(list_id: PydanticObjectId, text: str) -> Todo:
    return Todo(list_id=list_id, created_by=OWNER, sync_lists=[list_id], text=text)


async def caught_up(feed: ChangeFeed) -> None:
    """Wait until the feed's shared stream has read everything written so far."""
    marker_list = PydanticObjectId()
    marker = new_todo(marker_list, "marker")
    await marker.insert()
    watcher = feed.subscribe(PydanticObjectId(), lists=[marker_list])
    await marker.set({"text": "seen"})
    async with asyncio.timeout(10):
        while True:
            change = await watcher.queue.get()
            if isinstance(change, Change) and change.kind == "updated":
                break
    feed.unsubscribe(watcher)


@pytest.mark.wire_only
async def test_a_catch_up_stops_after_its_limit(database: MongoDatabase) -> None:
    await init_db(database)
    async with started_feed(catch_up_limit=2) as feed:
        subscription = feed.subscribe(OWNER, lists=[LIST])
        assert subscription.token is not None
        await Todo.insert_many([new_todo(LIST, f"t{i}") for i in range(3)])
        await Todo.insert_many([new_todo(OTHER_LIST, "a list they can't read")])
        catch_up = await feed.catch_up(subscription, subscription.token)
        # Only their lists' changes, in order, up to the limit; the client resumes after.
        sent = await changes_of(catch_up)
        assert [(c.kind, c.data["text"]) for c in sent] == [("created", "t0"), ("created", "t1")]
        assert catch_up.truncated
        feed.discard(catch_up)
        rest = await feed.catch_up(subscription, sent[-1].token)
        assert [c.data["text"] for c in await changes_of(rest)] == ["t2"]
        assert not rest.truncated
        feed.discard(rest)


@pytest.mark.wire_only
async def test_a_catch_up_tells_the_changes_of_every_readable_list_and_departures(
    database: MongoDatabase,
) -> None:
    await init_db(database)
    shared, private, strangers = PydanticObjectId(), PydanticObjectId(), PydanticObjectId()
    async with started_feed() as feed:
        viewer = feed.subscribe(PydanticObjectId(), lists=[LIST, shared])
        assert viewer.token is not None
        theirs = new_todo(shared, "shared")
        for todo in (new_todo(LIST, "mine"), theirs, new_todo(strangers, "a stranger's")):
            await todo.insert()
        # Moved out of the viewer's lists: told as deleted from the list it left.
        await Todo.get_pymongo_collection().update_one(
            {"_id": theirs.id},
            {"$set": {"list_id": private, "moved_from": shared, "version": 2}},
        )
        catch_up = await feed.catch_up(viewer, viewer.token)
        told = [(c.kind, c.data.get("text"), c.list_id) for c in await changes_of(catch_up)]
        feed.discard(catch_up)
    assert told == [
        ("created", "mine", LIST),
        ("created", "shared", shared),
        ("deleted", None, shared),
    ]


@pytest.mark.wire_only
async def test_a_catch_up_leaves_out_a_list_taken_away_meanwhile(database: MongoDatabase) -> None:
    await init_db(database)
    shared = PydanticObjectId()
    async with started_feed() as feed:
        viewer = feed.subscribe(PydanticObjectId(), lists=[LIST, shared])
        assert viewer.token is not None
        await Todo.insert_many([new_todo(shared, "shared"), new_todo(LIST, "mine")])
        catch_up = await feed.catch_up(viewer, viewer.token)
        feed._take_away(viewer, shared)  # removed from the list while it catches up
        told = [c.data["text"] for c in await changes_of(catch_up)]
        feed.discard(catch_up)
    assert told == ["mine"]


@pytest.mark.wire_only
async def test_the_switch_from_catch_up_to_live_loses_and_repeats_nothing(
    database: MongoDatabase,
) -> None:
    await init_db(database)
    async with started_feed() as feed:
        before = feed.subscribe(PydanticObjectId()).token  # the client's Last-Event-ID
        assert before is not None
        missed = [new_todo(LIST, f"missed {i}") for i in range(2)]
        await Todo.insert_many(missed)
        await caught_up(feed)
        subscription = feed.subscribe(OWNER, lists=[LIST])  # the live queue starts here
        overlap = [new_todo(LIST, f"overlap {i}") for i in range(3)]
        for todo in overlap:
            await todo.insert()
        await caught_up(feed)
        assert subscription.queue.qsize() == 3  # queued live, and also in the catch-up
        catch_up = await feed.catch_up(subscription, before)
        received = [c.data["text"] for c in await changes_of(catch_up)]
        await new_todo(LIST, "after").insert()
        await caught_up(feed)
        while not subscription.queue.empty():
            change = subscription.queue.get_nowait()
            assert isinstance(change, Change)
            if not catch_up.covers(change):
                received.append(change.data["text"])
        feed.discard(catch_up)
    assert received == [todo.text for todo in missed + overlap] + ["after"]


class BatchCounter(monitoring.CommandListener):
    """Counts the reads of catch-up change streams (those filtered by list) and the
    largest batch the server returned to one."""

    def __init__(self) -> None:
        self.reads = 0
        self.largest = 0
        self._opening: set[int] = set()
        self._cursors: set[int] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        catching_up = "fullDocument.list_id" in str(command.get("pipeline"))
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
            subscription = feed.subscribe(OWNER, lists=[LIST])
            assert subscription.token is not None
            await Todo.insert_many([new_todo(LIST, f"t{i}") for i in range(backlog)])
            catch_up = await feed.catch_up(subscription, subscription.token)
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


# ---- the session a stream runs on, and its lists ----


async def test_a_stream_needs_an_active_session_of_an_existing_user(
    database: MongoDatabase,
) -> None:
    await init_db(database)
    now = utc_now()
    user = User(email="feed@example.com", fname="F", lname="S", hashed_password="x")
    await user.insert()
    user_id = id_of(user)

    async def session(**fields: Any) -> str:
        values: dict[str, Any] = {"expires_at": now + timedelta(days=1), **fields}
        stored = Session(
            id=new_session_id(),
            user_id=user_id,
            created_at=now,
            last_used_at=now,
            refresh_hash=uuid.uuid4().hex,
            **values,
        )
        await stored.insert()
        return stored.id

    active = await session()
    found = await event_store.active_session(session_id=active, user_id=user_id, now=now)
    assert found is not None
    assert found.expires_at == now + timedelta(days=1)
    for ended in [await session(revoked=True), await session(expires_at=now)]:
        assert await event_store.active_session(session_id=ended, user_id=user_id, now=now) is None
    # Someone else's session, or a deleted user's, doesn't count either.
    assert await event_store.active_session(session_id=active, user_id=OWNER, now=now) is None
    await user.delete()
    assert await event_store.active_session(session_id=active, user_id=user_id, now=now) is None


async def test_the_session_check_reads_the_users_memberships_with_it(
    database: MongoDatabase,
) -> None:
    await init_db(database)
    now = utc_now()
    user = User(email="lists@example.com", fname="F", lname="S", hashed_password="x")
    await user.insert()
    user_id = id_of(user)
    stored = Session(
        id=new_session_id(),
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        refresh_hash=uuid.uuid4().hex,
        expires_at=now + timedelta(days=1),
    )
    await stored.insert()
    live, left, strangers = PydanticObjectId(), PydanticObjectId(), PydanticObjectId()
    await Membership.insert_many(
        [
            Membership(list_id=live, user_id=user_id, role=Role.VIEWER),
            Membership(list_id=left, user_id=user_id, role=Role.EDITOR, removed_at=now),
            Membership(list_id=strangers, user_id=OWNER, role=Role.OWNER),
        ]
    )
    found = await event_store.active_session(
        session_id=stored.id, user_id=user_id, now=now, join=MEMBERSHIPS
    )
    assert found is not None
    assert readable_lists(found.joined) == {live}


@pytest.mark.wire_only
async def test_the_todo_stream_is_open_only_while_someone_subscribes(
    database: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every open change stream costs the database work on every write: nobody subscribed for
    # IDLE_CLOSE_SECONDS, the worker closes its todo stream; the next subscriber reopens it
    # before it takes its position, so it misses nothing written after.
    monkeypatch.setattr(feed_module, "IDLE_CLOSE_SECONDS", 0.2)
    await init_db(database)

    async def closed(feed: ChangeFeed) -> None:
        for _ in range(200):
            if feed._stream is None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the idle todo stream stayed open")

    async with started_feed() as feed:
        await closed(feed)
        await new_todo(LIST, "nobody is told").insert()
        subscription = await feed.open(OWNER, "s1")
        assert feed._stream is not None
        assert subscription.token is not None
        feed.load(subscription, [LIST])
        await new_todo(LIST, "told").insert()
        async with asyncio.timeout(10):
            change = await subscription.queue.get()
        assert isinstance(change, Change)
        assert (change.kind, change.data["text"]) == ("created", "told")
        # Its position resumes: a catch-up from it finds the same change.
        catch_up = await feed.catch_up(subscription, subscription.token)
        assert [c.data["text"] for c in await changes_of(catch_up)] == ["told"]
        feed.discard(catch_up)
        feed.unsubscribe(subscription)
        await closed(feed)
