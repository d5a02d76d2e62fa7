"""The live change feed: two change streams per worker, fanned out in memory.

`ChangeFeed` is started and stopped by the app's lifespan. It watches the todos collection
once (post-images looked up) and hands each change to the subscribers who can read the todo's
list, or the list a move took it out of (bounded queues; a subscriber that can't keep up is
closed and resumes with its Last-Event-ID). That stream is open only while this worker has a
subscriber (and IDLE_CLOSE_SECONDS after the last one left): every open change stream costs
the database work on every write (SecantusDB reads each oplog entry for each stream, looked-up
post-image or not), and a worker nobody subscribes to has no use for it. The first subscriber
opens it again, at the present: nobody needed what was written meanwhile.

Each subscription holds the ids of the lists its user can read, read with its session when it
opens and kept current by the feed. A resuming client first catches up on a change stream of
its own (filtered by those lists on the server), read one batch at a time, and then reads the
shared one, skipping what the catch-up covered.

The worker's access stream (service/core/watch.py: one per worker, shared with the
authentication cache), on the whole database but filtered on the server to a few kinds of
change and without post-images, brings what changes who may read what: memberships (added,
removed, a role changed) and lists (created, renamed, deleted, ...) update the open
subscriptions at once and become list events; sessions revoked or deleted (logout, password
change, account deletion, on any worker) end their streams with `event: revoked`.

Each open stream holds one of its user's slots (store), leased in MongoDB and renewed by the
feed while the stream runs. The feed runs outside any request, so no per-request database
time budget applies to it.
"""

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pymongo
from beanie import PydanticObjectId
from bson import Timestamp
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from service.core.clock import utc_now
from service.core.tasks import cancel_until_done as _cancel_until_done
from service.core.tasks import close_quietly as _close_quietly
from service.core.tasks import in_empty_context as _in_empty_context
from service.core.watch import AccessWatcher
from service.events import changes, store
from service.events.changes import Change, ListEvent, TodoEvent
from service.events.store import SlotLease
from service.lists import service as lists_service
from service.lists.models import Role

logger = logging.getLogger(__name__)

RESUME_TOKEN_PATTERN = r"^[0-9A-Fa-f]{2,1024}$"  # noqa: S105 -- a pattern, not a secret
_RESUME_TOKEN_RE = re.compile(RESUME_TOKEN_PATTERN)
# Change-stream errors meaning "that point is gone from the server's history".
_HISTORY_LOST = {280, 286}  # ChangeStreamFatalError, ChangeStreamHistoryLost
_OPERATIONS: dict[str, Any] = {
    "$match": {"operationType": {"$in": ["insert", "update", "replace"]}}
}
RETRY_DELAY = 1.0
# A resuming client's backlog is read (and held) this many events at a time.
CATCH_UP_BATCH = 100
# How often a worker renews the leases of its users' stream slots (well within their LEASE).
LEASE_RENEWAL_SECONDS = store.LEASE.total_seconds() / 3
# On stop: how long closing the change streams and freeing this worker's slots may take in
# all (with the database down, each call would otherwise wait a server selection timeout).
CLOSE_TIMEOUT_SECONDS = 1.0
# The control stream's read of a changed membership gives up after (then resumes before it).
LOOKUP_TIMEOUT_SECONDS = 5.0
# A best-effort call made in the background (freeing a slot, closing a catch-up) gives up after.
CLEANUP_TIMEOUT_SECONDS = 5.0
# How long the todo stream stays open after the last subscriber left (or after the start):
# a client reconnecting (its access token expired, a network blip) finds it still open.
IDLE_CLOSE_SECONDS = 30.0

# What the feed's tasks put in a subscription's queue; None means "close".
Item = Change | ListEvent


class InvalidResumeTokenError(ValueError):
    """Last-Event-ID is not a resume token of this feed."""


class ResumeTokenTooOldError(Exception):
    """The server no longer has the history after that resume token."""


class WorkerStreamsFullError(Exception):
    """This worker already serves MAX_STREAMS_PER_WORKER streams."""


class UserStreamsFullError(Exception):
    """The user already has MAX_STREAMS_PER_USER open streams (on any worker)."""


def parse_resume_token(value: str) -> dict[str, str]:
    """A Last-Event-ID as a change-stream resume token, or InvalidResumeTokenError."""
    if not _RESUME_TOKEN_RE.fullmatch(value):
        raise InvalidResumeTokenError(value)
    return {"_data": value}


@dataclass(eq=False)
class Subscription:
    """One open event stream: the changes of the lists its user can read, queued.

    `lists` is None until the feed has them (`ChangeFeed.load`, right after the session check
    that reads them); meanwhile the todo changes and the user's own membership changes are
    kept in `held` and `pending`, then applied. `revoked` says the close is because its
    session ended (the stream says so before it ends).
    """

    user_id: PydanticObjectId
    session_id: str | None
    token: str | None
    queue: asyncio.Queue[Item | None] = field(default_factory=asyncio.Queue)
    lists: set[PydanticObjectId] | None = None
    held: list[TodoEvent] = field(default_factory=list)
    # (list id, readable now?) in the order the feed saw them.
    pending: list[tuple[PydanticObjectId, bool]] = field(default_factory=list)
    revoked: bool = False
    closed: bool = False
    slot: SlotLease | None = None

    def reads(self, list_id: PydanticObjectId) -> bool:
        """Whether the stream carries that list's changes now."""
        return self.lists is not None and list_id in self.lists


class CatchUp:
    """A resuming client's backlog, read from its own change stream one batch at a time.

    Only the stream's current batch (at most CATCH_UP_BATCH events) is ever held. `last_time`
    is the cluster time of the last event read, sent or not: live changes up to it were covered.
    After `limit` changes it stops (`truncated`): the client resumes from the last one it got.
    Each change is told as the subscription's lists allow when it is read (a list removed
    meanwhile is left out).
    """

    def __init__(
        self,
        stream: AsyncChangeStream[dict[str, Any]],
        first: dict[str, Any] | None,
        *,
        subscription: Subscription,
        limit: int,
    ) -> None:
        self._stream = stream
        self._next = first
        self._subscription = subscription
        self._limit = limit
        self.behind = first is not None
        self.last_time: Timestamp | None = None
        self.truncated = False

    async def changes(self) -> AsyncIterator[Change]:
        sent = 0
        event = self._next
        self._next = None
        while event is not None:
            self.last_time = event.get("clusterTime", self.last_time)
            todo_event = TodoEvent.of(event)
            change = None if todo_event is None else todo_event.told(self._readable())
            if change is not None:
                yield change
                sent += 1
                if sent >= self._limit:
                    self.truncated = True
                    return
            event = await self._stream.try_next()

    def _readable(self) -> set[PydanticObjectId]:
        return self._subscription.lists or set()

    def covers(self, change: Change) -> bool:
        """Whether a live change was already covered by this catch-up (sent or skipped).

        The shared stream queues every change after the feed's position when the client
        subscribed; the catch-up read on up to the present, so the two overlap. Both are in
        cluster-time order, so the overlap is what is at or before the last event the
        catch-up read: one timestamp to keep, not a set of what was sent.
        """
        if self.last_time is None or change.cluster_time is None:
            return False
        return bool(change.cluster_time <= self.last_time)

    async def close(self) -> None:
        with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
            await _close_quietly(self._stream)


@dataclass(frozen=True, slots=True)
class _Watched:
    """The collections of the access stream the feed acts on, by name (None: not watched)."""

    sessions: str | None = None
    memberships: str | None = None
    lists: str | None = None

    def branches(self) -> list[dict[str, Any]]:
        """Only the changes the feed acts on, filtered on the server: the rest of the
        database's writes (todo counts on lists, session refreshes, ...) never come back."""
        branches: list[dict[str, Any]] = []

        def changed(name: str, updated_field: str) -> dict[str, Any]:
            path = f"updateDescription.updatedFields.{updated_field}"
            return {"ns.coll": name, path: {"$exists": True}}

        if self.sessions is not None:
            branches += [
                {"ns.coll": self.sessions, "operationType": "delete"},
                {"ns.coll": self.sessions, "updateDescription.updatedFields.revoked": True},
            ]
        if self.memberships is not None:
            branches += [
                {"ns.coll": self.memberships, "operationType": "insert"},
                changed(self.memberships, "removed_at"),
                changed(self.memberships, "role"),
            ]
        if self.lists is not None:
            branches += [
                {"ns.coll": self.lists, "operationType": {"$in": ["insert", "delete"]}},
                # Every change a member sees in a `List` bumps its version (not todo counts).
                changed(self.lists, "version"),
                changed(self.lists, "deleted_at"),
            ]
        return branches


class ChangeFeed:
    """The worker's change stream of todos and its subscribers; what changes who reads what
    comes from the worker's access stream (`watch_access`)."""

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        catch_up_limit: int = 10_000,
        max_streams_per_worker: int = 1000,
        max_streams_per_user: int = 5,
    ) -> None:
        self._collection: AsyncCollection[dict[str, Any]] | None = None
        self._stopping = False
        self._database: AsyncDatabase[dict[str, Any]] | None = None
        self._watched = _Watched()
        self._queue_size = queue_size
        self._catch_up_limit = catch_up_limit
        self._max_per_worker = max_streams_per_worker
        self._max_per_user = max_streams_per_user
        # This worker's name on the stream slots it leases.
        self._worker = secrets.token_hex(8)
        self._by_user: dict[PydanticObjectId, set[Subscription]] = {}
        self._by_session: dict[str, set[Subscription]] = {}
        self._by_list: dict[PydanticObjectId, set[Subscription]] = {}
        self._loading: set[Subscription] = set()
        self._token: Mapping[str, Any] | None = None
        self._stream: AsyncChangeStream[dict[str, Any]] | None = None
        # Opening the todo stream: _run (resuming) and the first subscriber (ensure_running)
        # both may; one at a time, so that they never open two.
        self._opening = asyncio.Lock()
        # Set when a subscriber comes while the todo stream is closed: _run waits for it.
        self._wanted = asyncio.Event()
        # When the last subscriber left (or the feed started): the todo stream closes
        # IDLE_CLOSE_SECONDS later if nobody subscribed meanwhile.
        self._idle_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Fire-and-forget database calls (freeing a slot, closing a catch-up stream), made
        # outside the request that asked for them: a cancelled response can't cancel them.
        self._cleanups: set[asyncio.Task[None]] = set()
        self.available = False

    @property
    def max_streams_per_user(self) -> int:
        return self._max_per_user

    @property
    def subscriber_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._by_user.values())

    def watch_access(
        self,
        watcher: AccessWatcher,
        *,
        sessions: AsyncCollection[dict[str, Any]] | None = None,
        memberships: AsyncCollection[dict[str, Any]] | None = None,
        lists: AsyncCollection[dict[str, Any]] | None = None,
    ) -> None:
        """Act on the changes of `sessions` (revocations), `memberships` and `lists` (who
        reads what), those given, as the worker's access stream brings them (call before the
        watcher starts)."""
        self._watched = _Watched(
            *(
                None if watched is None else watched.name
                for watched in (sessions, memberships, lists)
            )
        )
        if self._watched != _Watched():
            watcher.subscribe(self)

    async def start(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        """Watch the todos `collection`; if the server can't (a standalone server has no
        change streams), the feed stays unavailable."""
        self._stopping = False
        self._collection = collection
        self._database = collection.database
        try:
            stream = await self._opened()
        except PyMongoError as exc:
            logger.warning("live change feed unavailable (no change streams): %s", exc)
            with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
                await _close_quietly(self._stream)
            self._stream = None
            return
        self.available = True
        self._token = stream.resume_token
        self._idle_since = None if self._by_user else time.monotonic()
        loops = [self._run(), self._renew_leases()]
        self._tasks = [_in_empty_context(loop) for loop in loops]

    async def stop(self) -> None:
        """End every subscriber's stream and the feed's own tasks, close the change streams
        and free this worker's slots; then end the cleanups still running.

        Every task is cancelled until it has really ended (see _cancel_until_done), and the
        database calls share one deadline: nothing here waits for long, database down or not.
        """
        # The loops end by themselves at their next turn too: a cancellation pymongo loses (see
        # _cancel_until_done) can be lost again and again when the canceller's polling falls
        # in step with the driver's own waits, which is how a shutdown with the database down
        # once hung until the test timeout.
        self._stopping = True
        self.close_subscribers()
        try:
            await _cancel_until_done(self._tasks)
            self._tasks = []
            with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
                await _close_quietly(self._stream)
                if self.available:
                    with contextlib.suppress(PyMongoError):
                        await store.release_worker_slots(worker=self._worker)
        finally:
            # Even if the stop itself is cancelled; and until none runs: a response released
            # meanwhile may have started another.
            while running := [task for task in self._cleanups if not task.done()]:
                await _cancel_until_done(running)
            self._stream = None
            self.available = False

    def close_subscribers(self) -> None:
        """End every open event stream (on shutdown): clients reconnect with Last-Event-ID."""
        for subscribers in list(self._by_user.values()):
            for subscription in list(subscribers):
                self._close(subscription)

    def subscribe(
        self,
        user_id: PydanticObjectId,
        session_id: str | None = None,
        *,
        lists: Iterable[PydanticObjectId] | None = None,
    ) -> Subscription:
        """A new subscriber to the changes of the lists the user reads, from the feed's
        current position on: of `lists` if given, else of those `load` gives it later.

        WorkerStreamsFullError if this worker already serves MAX_STREAMS_PER_WORKER streams.
        """
        if self.subscriber_count >= self._max_per_worker:
            raise WorkerStreamsFullError
        token = self._token["_data"] if self._token else None
        subscription = Subscription(user_id, session_id, token, asyncio.Queue(self._queue_size + 1))
        self._idle_since = None
        if self._stream is None:
            # Not through `open` (which opens the stream first): the stream opens at its next
            # turn, and only the changes after that reach this subscriber.
            self._wanted.set()
        self._by_user.setdefault(user_id, set()).add(subscription)
        if session_id is not None:
            self._by_session.setdefault(session_id, set()).add(subscription)
        self._loading.add(subscription)
        if lists is not None:
            self.load(subscription, lists)
        return subscription

    async def open(self, user_id: PydanticObjectId, session_id: str) -> Subscription:
        """Subscribe, holding one of the user's stream slots until `unsubscribe`; its lists
        come with `load`.

        WorkerStreamsFullError if this worker is full, UserStreamsFullError if the user already
        has MAX_STREAMS_PER_USER streams open. The worker's own count is taken first (it is
        synchronous, so parallel opens can't all pass it), then the user's slot. The todo
        stream is opened first if it was closed (nobody subscribed): the subscription's
        position is then that stream's start.
        """
        await self.ensure_running()
        subscription = self.subscribe(user_id, session_id)
        try:
            slot = await store.take_slot(
                user_id=user_id,
                max_per_user=self._max_per_user,
                worker=self._worker,
                now=utc_now(),
            )
        except BaseException:
            self.unsubscribe(subscription)
            raise
        if slot is None:
            self.unsubscribe(subscription)
            raise UserStreamsFullError
        subscription.slot = slot
        return subscription

    def load(
        self, subscription: Subscription, lists: Iterable[PydanticObjectId]
    ) -> frozenset[PydanticObjectId]:
        """Give a new subscription the lists its user can read (read after it subscribed);
        the lists it carries from now on.

        What the feed saw meanwhile is applied over them in order: the user's own membership
        changes (each the latest word on its list, so applying them is right whether the read
        saw them or not), then the todo changes held, told as those lists allow. Synchronous:
        nothing else runs between the two.
        """
        readable = set(lists)
        for list_id, granted in subscription.pending:
            if granted:
                readable.add(list_id)
            else:
                readable.discard(list_id)
        subscription.pending.clear()
        subscription.lists = readable
        held, subscription.held = subscription.held, []
        if subscription not in self._loading:
            return frozenset(readable)  # closed meanwhile: nothing more is sent
        self._loading.discard(subscription)
        for list_id in readable:
            self._by_list.setdefault(list_id, set()).add(subscription)
        for todo_event in held:
            change = todo_event.told(readable)
            if change is not None:
                self._offer(subscription, change)
        return frozenset(readable)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop feeding the subscription and free its slot (idempotent)."""
        _discard(self._by_user, subscription.user_id, subscription)
        if subscription.session_id is not None:
            _discard(self._by_session, subscription.session_id, subscription)
        self._loading.discard(subscription)
        for list_id in subscription.lists or ():
            _discard(self._by_list, list_id, subscription)
        if subscription.slot is not None:
            self._in_background(store.release_slot(slot=subscription.slot))
            subscription.slot = None
        if not self._by_user and self._idle_since is None:
            self._idle_since = time.monotonic()

    def revoke_session(self, session_id: str) -> None:
        """End every stream running on the session, saying why."""
        for subscription in list(self._by_session.get(session_id, ())):
            self._close(subscription, revoked=True)

    def discard(self, catch_up: CatchUp) -> None:
        """Close a catch-up's change stream, even from a response being cancelled."""
        self._in_background(catch_up.close())

    async def catch_up(self, subscription: Subscription, last_event_id: str) -> CatchUp:
        """The changes of the subscription's lists after `last_event_id`, to read batch by
        batch (then `discard`).

        The server sends only the changes of those lists, and of todos moved out of them. The
        first batch is read here, so that InvalidResumeTokenError (a token the server can't
        use) and ResumeTokenTooOldError (its history is gone) come before any answer.
        """
        token = parse_resume_token(last_event_id)
        collection = self._watched_collection()
        readable = sorted(subscription.lists or ())
        pipeline: list[dict[str, Any]] = [
            _OPERATIONS,
            {
                "$match": {
                    "$or": [
                        {"fullDocument.list_id": {"$in": readable}},
                        {"updateDescription.updatedFields.moved_from": {"$in": readable}},
                        # A move logged as a replacement (see changes.TodoEvent._replaced).
                        {"operationType": "replace", "fullDocument.moved_from": {"$in": readable}},
                    ]
                }
            },
        ]
        try:
            stream = await collection.watch(
                pipeline,
                full_document="updateLookup",
                resume_after=token,
                max_await_time_ms=1,
                batch_size=CATCH_UP_BATCH,
            )
        except OperationFailure as exc:
            raise _resume_error(exc) from exc
        try:
            first = await stream.try_next()
        except BaseException as exc:
            self._in_background(CatchUp(stream, None, subscription=subscription, limit=1).close())
            if isinstance(exc, OperationFailure):
                raise _resume_error(exc) from exc
            raise
        return CatchUp(stream, first, subscription=subscription, limit=self._catch_up_limit)

    def _watched_collection(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise RuntimeError("the change feed was not started")
        return self._collection

    # ---- todos ----

    async def ensure_running(self) -> None:
        """Open the todo stream if it is closed (nobody subscribed for IDLE_CLOSE_SECONDS):
        a subscriber made right after this gets every change from its start on."""
        if self.available and self._stream is None and not self._stopping:
            await self._opened()
            self._wanted.set()

    async def _opened(self) -> AsyncChangeStream[dict[str, Any]]:
        """The todo stream, opened if needed: where it was (`_token`) after a failure, at the
        present after an idle close."""
        async with self._opening:
            if self._stream is None:
                self._stream = await self._open()
                if self._token is None:
                    self._token = self._stream.resume_token
            return self._stream

    async def _open(self) -> AsyncChangeStream[dict[str, Any]]:
        return await self._watched_collection().watch(
            [_OPERATIONS],
            full_document="updateLookup",
            resume_after=self._token,
            max_await_time_ms=500,
        )

    def _idle(self) -> bool:
        """Whether nobody has subscribed for IDLE_CLOSE_SECONDS."""
        since = self._idle_since
        return (
            not self._by_user
            and since is not None
            and time.monotonic() - since >= IDLE_CLOSE_SECONDS
        )

    async def _close_idle(self) -> None:
        """Close the todo stream nobody needs; the next subscriber opens one at the present
        (resuming would only read what nobody was there to be told)."""
        stream, self._stream, self._token = self._stream, None, None
        self._wanted.clear()
        with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
            await _close_quietly(stream)

    async def _run(self) -> None:
        while not self._stopping:
            if self._stream is not None and self._idle():
                await self._close_idle()
            if self._stream is None and not self._by_user:
                # Where it was is of no use to a later subscriber: it starts at the present.
                self._token = None
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                stream = await self._opened()
                event = await stream.try_next()
            except PyMongoError as exc:
                logger.warning("change stream failed, resuming in %ss: %s", RETRY_DELAY, exc)
                await _close_quietly(self._stream)
                self._stream = None
                await asyncio.sleep(RETRY_DELAY)
                continue
            if event is None:
                self._token = stream.resume_token
                if not stream.alive:
                    # Invalidated (e.g. the collection was dropped): reopen after a pause
                    # rather than spin on a closed stream.
                    logger.warning("change stream closed by the server; reopening")
                    self._stream = None
                    await asyncio.sleep(RETRY_DELAY)
                continue
            self._token = event["_id"]
            # Most changes have no subscriber in this worker: don't build what nobody reads.
            if self._loading or self._concerns_anyone(event):
                with _skipped_if_unreadable(event):
                    todo_event = TodoEvent.of(event)
                    if todo_event is not None:
                        self._dispatch(todo_event)

    def _concerns_anyone(self, event: Mapping[str, Any]) -> bool:
        """Whether a subscriber reads the todo's list, or the list a move took it out of."""
        document = event.get("fullDocument") or {}
        updated = (event.get("updateDescription") or {}).get("updatedFields") or {}
        # A replacement has no description: the list it names as left is in the document.
        left = document.get("moved_from") if event["operationType"] == "replace" else None
        return any(
            list_id in self._by_list
            for list_id in (document.get("list_id"), updated.get("moved_from"), left)
        )

    def _dispatch(self, todo_event: TodoEvent) -> None:
        for subscription in list(self._loading):
            # Told once its lists are known (load); bounded as its queue is.
            if len(subscription.held) >= self._queue_size:
                self._close(subscription)
            else:
                subscription.held.append(todo_event)
        readers: set[Subscription] = set()
        for list_id in todo_event.lists:
            readers.update(self._by_list.get(list_id, ()))
        for subscription in readers:
            change = todo_event.told(subscription.lists or ())
            if change is not None:
                self._offer(subscription, change)

    def _offer(self, subscription: Subscription, item: Item) -> None:
        if subscription.queue.qsize() >= self._queue_size:
            # Too slow a reader: close its stream rather than buffer without bound.
            self._close(subscription)
        else:
            subscription.queue.put_nowait(item)

    def _close(self, subscription: Subscription, *, revoked: bool = False) -> None:
        self.unsubscribe(subscription)
        subscription.revoked = subscription.revoked or revoked
        if subscription.closed:
            return
        subscription.closed = True
        # The queue keeps one place free for this (see subscribe and _offer).
        with contextlib.suppress(asyncio.QueueFull):
            subscription.queue.put_nowait(None)

    # ---- memberships, lists and sessions ----

    def branches(self) -> list[dict[str, Any]]:
        """The changes of the access stream the feed acts on (AccessSubscriber)."""
        return self._watched.branches()

    async def on_change(self, event: Mapping[str, Any]) -> None:
        """Apply a membership, list or session change to the open streams, whichever worker
        it was made on (AccessSubscriber)."""
        await self._on_control(event)

    def on_interrupted(self) -> None:
        """The access stream resumes where it was: nothing is lost (AccessSubscriber)."""

    def on_gap(self) -> None:
        """What changed while the access stream was away is lost: every stream ends, and its
        client reconnects (its session checked, its lists read again) with Last-Event-ID."""
        logger.warning("the access stream can't resume: ending every stream")
        self.close_subscribers()

    async def _on_control(self, event: Mapping[str, Any]) -> None:
        collection = (event.get("ns") or {}).get("coll")
        operation = event["operationType"]
        key = (event.get("documentKey") or {}).get("_id")
        updated = (event.get("updateDescription") or {}).get("updatedFields") or {}
        if collection == self._watched.sessions:
            # The access stream carries the changes other subscribers need too: only a
            # revocation or a deletion ends streams.
            if operation == "delete" or updated.get("revoked") is True:
                self.revoke_session(str(key))
        elif collection == self._watched.memberships:
            await self._on_membership(operation, key, event.get("fullDocument"), updated)
        elif collection == self._watched.lists:
            self._on_list(operation, PydanticObjectId(key), event.get("fullDocument"), updated)

    async def _on_membership(
        self,
        operation: str,
        membership_id: Any,
        document: Mapping[str, Any] | None,
        updated: Mapping[str, Any],
    ) -> None:
        if operation == "insert" and document is not None:
            if document.get("removed_at") is not None:
                return
            list_id, user_id = (
                PydanticObjectId(document["list_id"]),
                PydanticObjectId(document["user_id"]),
            )
            if document["role"] == Role.OWNER:
                # A new list's owner: list_created came with the list itself.
                self._grant(user_id, list_id)
            else:
                self._added(list_id, user_id, Role(document["role"]))
            return
        if operation != "update" or not {"removed_at", "role"} & updated.keys():
            return
        # An update's description lacks the list and the user: read them (rare writes).
        with pymongo.timeout(LOOKUP_TIMEOUT_SECONDS):
            found = await lists_service.membership_by_id(membership_id=membership_id)
        if found is None:
            return
        list_id, user_id = PydanticObjectId(found["list_id"]), PydanticObjectId(found["user_id"])
        if "removed_at" in updated:
            if updated["removed_at"] is None:
                self._added(list_id, user_id, Role(updated.get("role", found["role"])))
            else:
                self._removed(list_id, user_id)
        elif "role" in updated:
            told = changes.role_changed(list_id, Role(updated["role"]))
            for subscription in list(self._by_user.get(user_id, ())):
                if subscription.reads(list_id):
                    self._offer(subscription, told)

    def _on_list(
        self,
        operation: str,
        list_id: PydanticObjectId,
        document: Mapping[str, Any] | None,
        updated: Mapping[str, Any],
    ) -> None:
        if operation == "insert" and document is not None:
            if document.get("deleted_at") is None:
                owner_id = PydanticObjectId(document["owner_id"])
                self._grant(owner_id, list_id)
                told = changes.list_created(document)
                for subscription in list(self._by_user.get(owner_id, ())):
                    if subscription.reads(list_id):
                        self._offer(subscription, told)
        elif operation == "delete" or updated.get("deleted_at") is not None:
            self._drop_list(list_id)
        elif operation == "update":
            told = changes.list_updated(list_id, updated)
            for subscription in list(self._by_list.get(list_id, ())):
                self._offer(subscription, told)

    def _grant(self, user_id: PydanticObjectId, list_id: PydanticObjectId) -> None:
        """The user's streams carry the list from now on."""
        for subscription in self._by_user.get(user_id, ()):
            if subscription.lists is None:
                subscription.pending.append((list_id, True))
            elif list_id not in subscription.lists:
                subscription.lists.add(list_id)
                self._by_list.setdefault(list_id, set()).add(subscription)

    def _take_away(self, subscription: Subscription, list_id: PydanticObjectId) -> None:
        """The stream carries nothing more of the list (changes already queued included: the
        response skips those of lists it no longer reads); it says so."""
        if subscription.lists is None:
            subscription.pending.append((list_id, False))
            return
        if list_id in subscription.lists:
            subscription.lists.discard(list_id)
            _discard(self._by_list, list_id, subscription)
            self._offer(subscription, changes.list_removed(list_id))

    def _added(self, list_id: PydanticObjectId, user_id: PydanticObjectId, role: Role) -> None:
        self._grant(user_id, list_id)
        told = changes.member_added(list_id, user_id, role)
        for subscription in list(self._by_list.get(list_id, ())):
            self._offer(subscription, told)

    def _removed(self, list_id: PydanticObjectId, user_id: PydanticObjectId) -> None:
        for subscription in list(self._by_user.get(user_id, ())):
            self._take_away(subscription, list_id)
        told = changes.member_removed(list_id, user_id)
        for subscription in list(self._by_list.get(list_id, ())):
            self._offer(subscription, told)

    def _drop_list(self, list_id: PydanticObjectId) -> None:
        """A list deleted: nobody reads it any more."""
        for subscription in list(self._by_list.get(list_id, ())):
            self._take_away(subscription, list_id)
        for subscription in list(self._loading):
            self._take_away(subscription, list_id)

    # ---- stream slots ----

    async def _renew_leases(self) -> None:
        """Keep the stream slots of this worker's subscribers leased while they run."""
        while not self._stopping:
            await asyncio.sleep(LEASE_RENEWAL_SECONDS)
            if not self._by_user:
                continue
            try:
                with pymongo.timeout(LEASE_RENEWAL_SECONDS):
                    await store.renew_slots(worker=self._worker, now=utc_now())
            except PyMongoError as exc:
                logger.warning("could not renew the feed's stream slots: %s", exc)

    def _in_background(self, call: Awaitable[None]) -> None:
        task = _in_empty_context(_quietly(call))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)


@contextlib.contextmanager
def _skipped_if_unreadable(event: Mapping[str, Any]) -> Iterator[None]:
    """A change the feed can't make sense of (a document of an unexpected shape) is logged
    and skipped: failing the task would end the feed, revocations included, for everyone.
    Database errors go on up (the stream resumes before the change)."""
    try:
        yield
    except PyMongoError:
        raise
    except Exception:
        logger.exception("feed skipped a change it could not read: %s", event.get("_id"))


def _discard(index: dict[Any, set[Subscription]], key: Any, subscription: Subscription) -> None:
    """Take the subscription out of one entry of an index, and the entry once empty."""
    subscribers = index.get(key)
    if subscribers is not None:
        subscribers.discard(subscription)
        if not subscribers:
            del index[key]


def _resume_error(exc: OperationFailure) -> Exception:
    """What a change stream's failure to resume means for the client's Last-Event-ID."""
    if exc.code in _HISTORY_LOST:
        return ResumeTokenTooOldError(str(exc))
    return InvalidResumeTokenError(str(exc))


async def _quietly(call: Awaitable[None]) -> None:
    """Run a best-effort database call; a failure is logged, not raised."""
    try:
        with pymongo.timeout(CLEANUP_TIMEOUT_SECONDS):
            await call
    except PyMongoError as exc:
        logger.warning("feed cleanup failed: %s", exc)
