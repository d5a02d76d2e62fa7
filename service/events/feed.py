"""The live change feed: one MongoDB change stream per worker, fanned out in memory.

`ChangeFeed` is started and stopped by the app's lifespan. It watches the todos collection
once and hands each change to the subscribers of the todo's owner (bounded queues; a
subscriber that can't keep up is closed and resumes with its Last-Event-ID). A resuming client
first catches up on a change stream of its own (filtered by owner on the server), read one
batch at a time, and then reads the shared one, skipping what the catch-up already covered.

It also watches the sessions collection: when a session is revoked or deleted (logout,
password change, account deletion, on any worker), the streams running on it end with an
`event: revoked` frame. Each open stream holds one of its user's slots (store), leased
in MongoDB and renewed by the feed while the stream runs.

The feed runs outside any request, so no per-request database time budget applies to it.
"""

import asyncio
import contextlib
import contextvars
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pymongo
from beanie import PydanticObjectId
from bson import Timestamp
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from service.core.clock import utc_now
from service.events import store
from service.events.store import SlotLease
from service.todos.schemas import TodoPublic, TodoTombstone

logger = logging.getLogger(__name__)

EventKind = Literal["created", "updated", "deleted"]
RESUME_TOKEN_PATTERN = r"^[0-9A-Fa-f]{2,1024}$"  # noqa: S105 -- a pattern, not a secret
_RESUME_TOKEN_RE = re.compile(RESUME_TOKEN_PATTERN)
# Change-stream errors meaning "that point is gone from the server's history".
_HISTORY_LOST = {280, 286}  # ChangeStreamFatalError, ChangeStreamHistoryLost
_OPERATIONS: dict[str, Any] = {
    "$match": {"operationType": {"$in": ["insert", "update", "replace"]}}
}
# Session changes that end the streams running on the session: revoked, or deleted (account
# deletion, or the TTL monitor once it expired).
_SESSION_ENDS: dict[str, Any] = {
    "$match": {
        "$or": [
            {"operationType": "delete"},
            {"updateDescription.updatedFields.revoked": True},
        ]
    }
}
RETRY_DELAY = 1.0
# A resuming client's backlog is read (and held) this many events at a time.
CATCH_UP_BATCH = 100
# How often a worker renews the leases of its users' stream slots (well within their LEASE).
LEASE_RENEWAL_SECONDS = store.LEASE.total_seconds() / 3
# Sessions are re-checked by query in chunks of this many ids (only after the session watch
# had to reconnect: an $in of many ids is slow on SecantusDB).
SESSION_CHECK_CHUNK = 100
# On stop: how often to repeat the cancellation of a background task, and how long closing
# the change streams and freeing this worker's slots may take in all (with the database down,
# each call would otherwise wait a server selection timeout).
STOP_POLL_SECONDS = 0.1
CLOSE_TIMEOUT_SECONDS = 1.0
# A best-effort call made in the background (freeing a slot, closing a catch-up) gives up after.
CLEANUP_TIMEOUT_SECONDS = 5.0


class InvalidResumeTokenError(ValueError):
    """Last-Event-ID is not a resume token of this feed."""


class ResumeTokenTooOldError(Exception):
    """The server no longer has the history after that resume token."""


class WorkerStreamsFullError(Exception):
    """This worker already serves MAX_STREAMS_PER_WORKER streams."""


class UserStreamsFullError(Exception):
    """The user already has MAX_STREAMS_PER_USER open streams (on any worker)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a todo, ready to send: kind, resume token, owner and JSON data.

    `cluster_time` orders it among the other changes (a resume token's bytes don't, on every
    server): the feed uses it to skip what a client's catch-up already covered.
    """

    kind: EventKind
    token: str
    owner_id: PydanticObjectId
    data: dict[str, Any]
    cluster_time: Timestamp | None = None


def parse_resume_token(value: str) -> dict[str, str]:
    """A Last-Event-ID as a change-stream resume token, or InvalidResumeTokenError."""
    if not _RESUME_TOKEN_RE.fullmatch(value):
        raise InvalidResumeTokenError(value)
    return {"_data": value}


def to_change(event: dict[str, Any]) -> Change | None:
    """What a change-stream event means to a client; None if it shouldn't be sent.

    Post-images may be read after later writes (SecantusDB reads them at read time): the kind
    comes from the event itself, and a non-deletion event whose post-image is already a
    tombstone is skipped, since the deletion's own event follows with the final version.
    """
    document = event.get("fullDocument")
    if document is None:
        return None  # removed since (a tombstone's TTL): nothing left to report
    owner_id = PydanticObjectId(document["owner_id"])
    updated = (event.get("updateDescription") or {}).get("updatedFields") or {}
    token = event["_id"]["_data"]
    cluster_time = event.get("clusterTime")
    if updated.get("deleted_at") is not None:
        # The deletion's own deleted_at and version, over a post-image that may be later.
        tombstone = TodoTombstone.from_stored({**document, **updated})
        data = tombstone.model_dump(mode="json")
        return Change("deleted", token, owner_id, data, cluster_time)
    if document.get("deleted_at") is not None:
        return None
    kind: EventKind = "created" if event["operationType"] == "insert" else "updated"
    # Read as stored (no Todo built and dumped again); from_stored fills in what it lacks.
    data = TodoPublic.from_stored(document).model_dump(mode="json")
    return Change(kind, token, owner_id, data, cluster_time)


@dataclass(eq=False)
class Subscription:
    """One open event stream: its owner's changes, queued; None in the queue means "close".

    `revoked` says the close is because its session ended (the stream says so before it ends).
    """

    owner_id: PydanticObjectId
    session_id: str | None
    token: str | None
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)
    revoked: bool = False
    closed: bool = False
    slot: SlotLease | None = None


class CatchUp:
    """A resuming client's backlog, read from its own change stream one batch at a time.

    Only the stream's current batch (at most CATCH_UP_BATCH events) is ever held. `last_time`
    is the cluster time of the last event read, sent or not: live changes up to it were covered.
    After `limit` changes it stops (`truncated`): the client resumes from the last one it got.
    """

    def __init__(
        self,
        stream: AsyncChangeStream[dict[str, Any]],
        first: dict[str, Any] | None,
        *,
        owner_id: PydanticObjectId,
        limit: int,
    ) -> None:
        self._stream = stream
        self._next = first
        self._owner_id = owner_id
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
            change = to_change(event)
            if change is not None and change.owner_id == self._owner_id:
                yield change
                sent += 1
                if sent >= self._limit:
                    self.truncated = True
                    return
            event = await self._stream.try_next()

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


class ChangeFeed:
    """The worker's one change stream on the todos collection, and its subscribers."""

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        catch_up_limit: int = 10_000,
        max_streams_per_worker: int = 1000,
        max_streams_per_user: int = 5,
    ) -> None:
        self._collection: AsyncCollection[dict[str, Any]] | None = None
        self._sessions: AsyncCollection[dict[str, Any]] | None = None
        self._queue_size = queue_size
        self._catch_up_limit = catch_up_limit
        self._max_per_worker = max_streams_per_worker
        self._max_per_user = max_streams_per_user
        # This worker's name on the stream slots it leases.
        self._worker = secrets.token_hex(8)
        self._subscribers: dict[PydanticObjectId, set[Subscription]] = {}
        self._by_session: dict[str, set[Subscription]] = {}
        self._token: Mapping[str, Any] | None = None
        self._stream: AsyncChangeStream[dict[str, Any]] | None = None
        self._session_stream: AsyncChangeStream[dict[str, Any]] | None = None
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
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    async def start(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        sessions: AsyncCollection[dict[str, Any]] | None = None,
    ) -> None:
        """Watch `collection` (and `sessions`, for revocations); if the server can't (a
        standalone server has no change streams), the feed stays unavailable."""
        self._collection = collection
        self._sessions = sessions
        try:
            self._stream = await self._open()
            if sessions is not None:
                self._session_stream = await self._open_session_watch()
        except PyMongoError as exc:
            logger.warning("live change feed unavailable (no change streams): %s", exc)
            with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
                await _close_quietly(self._stream)
            self._stream = None
            return
        self.available = True
        self._token = self._stream.resume_token
        loops = [self._run(), self._renew_leases()]
        if sessions is not None:
            loops.append(self._watch_sessions())
        self._tasks = [_in_empty_context(loop) for loop in loops]

    async def stop(self) -> None:
        """End every subscriber's stream and the feed's own tasks, close the change streams
        and free this worker's slots; then end the cleanups still running.

        Every task is cancelled until it has really ended (see _cancel_until_done), and the
        database calls share one deadline: nothing here waits for long, database down or not.
        """
        self.close_subscribers()
        try:
            await _cancel_until_done(self._tasks)
            self._tasks = []
            with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
                for stream in (self._stream, self._session_stream):
                    await _close_quietly(stream)
                if self.available:
                    with contextlib.suppress(PyMongoError):
                        await store.release_worker_slots(worker=self._worker)
        finally:
            # Even if the stop itself is cancelled; and until none runs: a response released
            # meanwhile may have started another.
            while running := [task for task in self._cleanups if not task.done()]:
                await _cancel_until_done(running)
            self._stream = self._session_stream = None
            self.available = False

    def close_subscribers(self) -> None:
        """End every open event stream (on shutdown): clients reconnect with Last-Event-ID."""
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                self._close(subscription)

    def subscribe(self, owner_id: PydanticObjectId, session_id: str | None = None) -> Subscription:
        """A new subscriber to the owner's changes, from the feed's current position on.

        WorkerStreamsFullError if this worker already serves MAX_STREAMS_PER_WORKER streams.
        """
        if self.subscriber_count >= self._max_per_worker:
            raise WorkerStreamsFullError
        token = self._token["_data"] if self._token else None
        subscription = Subscription(
            owner_id, session_id, token, asyncio.Queue(self._queue_size + 1)
        )
        self._subscribers.setdefault(owner_id, set()).add(subscription)
        if session_id is not None:
            self._by_session.setdefault(session_id, set()).add(subscription)
        return subscription

    async def open(self, owner_id: PydanticObjectId, session_id: str) -> Subscription:
        """Subscribe, holding one of the user's stream slots until `unsubscribe`.

        WorkerStreamsFullError if this worker is full, UserStreamsFullError if the user already
        has MAX_STREAMS_PER_USER streams open. The worker's own count is taken first (it is
        synchronous, so parallel opens can't all pass it), then the user's slot.
        """
        subscription = self.subscribe(owner_id, session_id)
        try:
            slot = await store.take_slot(
                user_id=owner_id,
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

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop feeding the subscription and free its slot (idempotent)."""
        subscribers = self._subscribers.get(subscription.owner_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.owner_id]
        if subscription.session_id is not None:
            same_session = self._by_session.get(subscription.session_id)
            if same_session is not None:
                same_session.discard(subscription)
                if not same_session:
                    del self._by_session[subscription.session_id]
        if subscription.slot is not None:
            self._in_background(store.release_slot(slot=subscription.slot))
            subscription.slot = None

    def revoke_session(self, session_id: str) -> None:
        """End every stream running on the session, saying why."""
        for subscription in list(self._by_session.get(session_id, ())):
            self._close(subscription, revoked=True)

    def discard(self, catch_up: CatchUp) -> None:
        """Close a catch-up's change stream, even from a response being cancelled."""
        self._in_background(catch_up.close())

    async def catch_up(self, owner_id: PydanticObjectId, last_event_id: str) -> CatchUp:
        """The owner's changes after `last_event_id`, to read batch by batch (then `discard`).

        The first batch is read here, so that InvalidResumeTokenError (a token the server
        can't use) and ResumeTokenTooOldError (its history is gone) come before any answer.
        """
        token = parse_resume_token(last_event_id)
        collection = self._watched(self._collection)
        pipeline: list[dict[str, Any]] = [
            _OPERATIONS,
            {"$match": {"fullDocument.owner_id": owner_id}},
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
            self._in_background(CatchUp(stream, None, owner_id=owner_id, limit=1).close())
            if isinstance(exc, OperationFailure):
                raise _resume_error(exc) from exc
            raise
        return CatchUp(stream, first, owner_id=owner_id, limit=self._catch_up_limit)

    @staticmethod
    def _watched(
        collection: AsyncCollection[dict[str, Any]] | None,
    ) -> AsyncCollection[dict[str, Any]]:
        if collection is None:
            raise RuntimeError("the change feed was not started")
        return collection

    async def _open(self) -> AsyncChangeStream[dict[str, Any]]:
        return await self._watched(self._collection).watch(
            [_OPERATIONS],
            full_document="updateLookup",
            resume_after=self._token,
            max_await_time_ms=500,
        )

    async def _run(self) -> None:
        while True:
            try:
                if self._stream is None:
                    self._stream = await self._open()
                event = await self._stream.try_next()
            except PyMongoError as exc:
                logger.warning("change stream failed, resuming in %ss: %s", RETRY_DELAY, exc)
                await _close_quietly(self._stream)
                self._stream = None
                await asyncio.sleep(RETRY_DELAY)
                continue
            if event is None:
                self._token = self._stream.resume_token
                if not self._stream.alive:
                    # Invalidated (e.g. the collection was dropped): reopen after a pause
                    # rather than spin on a closed stream.
                    logger.warning("change stream closed by the server; reopening")
                    self._stream = None
                    await asyncio.sleep(RETRY_DELAY)
                continue
            self._token = event["_id"]
            # Most changes have no subscriber in this worker: don't build what nobody reads.
            if (event.get("fullDocument") or {}).get("owner_id") not in self._subscribers:
                continue
            change = to_change(event)
            if change is not None:
                self._dispatch(change)

    def _dispatch(self, change: Change) -> None:
        for subscription in list(self._subscribers.get(change.owner_id, ())):
            if subscription.queue.qsize() >= self._queue_size:
                # Too slow a reader: close its stream rather than buffer without bound.
                self._close(subscription)
            else:
                subscription.queue.put_nowait(change)

    def _close(self, subscription: Subscription, *, revoked: bool = False) -> None:
        self.unsubscribe(subscription)
        subscription.revoked = subscription.revoked or revoked
        if subscription.closed:
            return
        subscription.closed = True
        # The queue keeps one place free for this (see subscribe and _dispatch).
        with contextlib.suppress(asyncio.QueueFull):
            subscription.queue.put_nowait(None)

    async def _open_session_watch(self) -> AsyncChangeStream[dict[str, Any]]:
        return await self._watched(self._sessions).watch([_SESSION_ENDS], max_await_time_ms=500)

    async def _watch_sessions(self) -> None:
        """End the streams of each session revoked or deleted, on whichever worker it was."""
        reconnected = False
        while True:
            try:
                if self._session_stream is None:
                    self._session_stream = await self._open_session_watch()
                    reconnected = True
                if reconnected:
                    # Sessions may have ended while no stream was open: ask for them once.
                    await self._recheck_sessions()
                    reconnected = False
                event = await self._session_stream.try_next()
            except PyMongoError as exc:
                logger.warning("session watch failed, resuming in %ss: %s", RETRY_DELAY, exc)
                await _close_quietly(self._session_stream)
                self._session_stream = None
                await asyncio.sleep(RETRY_DELAY)
                continue
            if event is None:
                if not self._session_stream.alive:
                    logger.warning("session watch closed by the server; reopening")
                    self._session_stream = None
                    await asyncio.sleep(RETRY_DELAY)
                continue
            self.revoke_session(event["documentKey"]["_id"])

    async def _recheck_sessions(self) -> None:
        session_ids = list(self._by_session)
        now = utc_now()
        for start in range(0, len(session_ids), SESSION_CHECK_CHUNK):
            chunk = session_ids[start : start + SESSION_CHECK_CHUNK]
            active = await store.active_sessions(session_ids=chunk, now=now)
            for session_id in chunk:
                if session_id not in active:
                    self.revoke_session(session_id)

    async def _renew_leases(self) -> None:
        """Keep the stream slots of this worker's subscribers leased while they run."""
        while True:
            await asyncio.sleep(LEASE_RENEWAL_SECONDS)
            if not self._subscribers:
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


def _resume_error(exc: OperationFailure) -> Exception:
    """What a change stream's failure to resume means for the client's Last-Event-ID."""
    if exc.code in _HISTORY_LOST:
        return ResumeTokenTooOldError(str(exc))
    return InvalidResumeTokenError(str(exc))


def _in_empty_context(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A background task in an empty context: no request's settings (its database time
    budget, its request id) leak into it."""
    return asyncio.create_task(coroutine, context=contextvars.Context())


async def _quietly(call: Awaitable[None]) -> None:
    """Run a best-effort database call; a failure is logged, not raised."""
    try:
        with pymongo.timeout(CLEANUP_TIMEOUT_SECONDS):
            await call
    except PyMongoError as exc:
        logger.warning("feed cleanup failed: %s", exc)


async def _close_quietly(stream: AsyncChangeStream[dict[str, Any]] | None) -> None:
    """Close a change stream, if any; a failure to (the database is down, say) is ignored."""
    if stream is not None:
        with contextlib.suppress(PyMongoError):
            await stream.close()


async def _cancel_until_done(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for them to end, cancelling again for as long as any runs.

    One cancellation can get lost inside pymongo: on Python 3.11, asyncio.wait_for (which
    pymongo uses to send a command and in its server selection loop) swallows a cancellation
    that arrives just as what it waits for completes. With the database down, the command then
    fails, `_run` takes that for a failed stream and resumes: the task would run, and a
    shutdown waiting for it, forever. If the caller is itself cancelled meanwhile, the tasks
    are still seen to their end first: left running, they would outlive the app.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    interrupted: asyncio.CancelledError | None = None
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=STOP_POLL_SECONDS)
        except asyncio.CancelledError as exc:
            interrupted = exc
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("feed task %s had failed", task.get_name(), exc_info=error)
    if interrupted is not None:
        raise interrupted
