"""The worker's one change stream on who may access what, and the hook for changes made here.

`AccessWatcher` watches the database once per worker for the changes of sessions, users,
memberships and lists that its subscribers ask for (the authentication cache, the change
feed): each gives the `$match` branches it needs, and the stream, filtered on the server to
their union and without post-images, hands every change to each of them in order. One stream
for all, not one each: every change stream reads every write of the oplog (two cost SecantusDB
+30 % CPU per todo write, bench/REPORT.md). It lives in core, not in one of the two features,
because both depend on it and neither owns it.

It also says how current it is: `caught_up_within(seconds)` is true while everything committed
up to that long ago has been handed to the subscribers (an empty `getMore` or a drained batch,
timed from when it was sent), which is what the authentication cache trusts its entries by.

`changed_here` is the other half: a store that changes who may access what (a logout, a member
removed, ...) calls it, and this worker's listener (bound to the request's context) hears of
it at once, before the request answers; other workers hear of it through their
stream.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import pymongo
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from service.core.context import access_listener
from service.core.tasks import cancel_until_done, close_quietly, in_empty_context

logger = logging.getLogger(__name__)

# Errors meaning the stream can't resume where it was (history gone, or a token of an
# invalidate event, which resumeAfter refuses): ChangeStreamFatalError, ChangeStreamHistoryLost,
# InvalidResumeToken.
CANNOT_RESUME = {280, 286, 260}
# After a failure the stream is reopened after this, doubling up to MAX_RETRY_DELAY.
RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 30.0
# How long the server holds an empty getMore: the stream's heartbeat.
MAX_AWAIT_MS = 500
CLOSE_TIMEOUT_SECONDS = 1.0


class AccessSubscriber(Protocol):
    """What the watcher hands its changes to."""

    def branches(self) -> list[dict[str, Any]]:
        """The `$match` branches (of one `$or`) selecting the changes it needs."""
        ...

    async def on_change(self, event: Mapping[str, Any]) -> None:
        """A change of the union of every subscriber's branches (check it is one of yours).
        A database error raised here makes the watcher resume before the change."""
        ...

    def on_interrupted(self) -> None:
        """The stream failed or ended: changes may come late (it resumes where it was)."""
        ...

    def on_gap(self) -> None:
        """The stream could not resume: the changes since it failed are lost."""
        ...


class AccessWatcher:
    """The worker's change stream on sessions, users, memberships and lists."""

    def __init__(self, *, max_await_ms: int = MAX_AWAIT_MS) -> None:
        self._subscribers: list[AccessSubscriber] = []
        self._max_await_ms = max_await_ms
        self._database: AsyncDatabase[dict[str, Any]] | None = None
        self._stream: AsyncChangeStream[dict[str, Any]] | None = None
        self._token: Mapping[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # time.monotonic() when the getMore (or aggregate) that fetched the batch being handed
        # out was sent, and when the last one whose changes were all handed out was: every
        # change committed before the latter has reached the subscribers.
        self._batch_sent: float | None = None
        self._caught_up_at: float | None = None
        self.available = False

    def subscribe(self, subscriber: AccessSubscriber) -> None:
        """Hand the changes `subscriber.branches()` selects to it (call before `start`)."""
        self._subscribers.append(subscriber)

    @property
    def caught_up_at(self) -> float | None:
        """The time.monotonic() up to which every change has been handed out; None while the
        stream is down or catching up."""
        return self._caught_up_at

    def caught_up_within(self, seconds: float) -> bool:
        """Whether every change committed more than `seconds` ago has been handed out (False
        while the stream is down or has not caught up since it came back)."""
        caught_up_at = self._caught_up_at
        return caught_up_at is not None and time.monotonic() - caught_up_at <= seconds

    async def start(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        """Open the stream and follow it in a background task; if the server can't (a
        standalone server has no change streams), the watcher stays unavailable."""
        self._stopping = False
        self._database = database
        if not self._subscribers:
            return
        try:
            await self._open()
        except PyMongoError as exc:
            logger.warning("access change stream unavailable (no change streams): %s", exc)
            return
        self.available = True
        self._task = in_empty_context(self._run())

    async def stop(self) -> None:
        """End the background task and close the stream (nothing here waits for long)."""
        self._stopping = True
        try:
            if self._task is not None:
                await cancel_until_done([self._task])
        finally:
            self._task = None
            with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
                await close_quietly(self._stream)
            self._stream = None
            self._caught_up_at = None
            self.available = False

    def _pipeline(self) -> list[dict[str, Any]]:
        branches = [branch for s in self._subscribers for branch in s.branches()]
        return [{"$match": {"$or": branches}}]

    async def _open(self) -> None:
        if self._database is None:
            raise RuntimeError("the access watcher was not started")
        pipeline = self._pipeline()
        sent = time.monotonic()
        try:
            stream = await self._database.watch(
                pipeline, resume_after=self._token, max_await_time_ms=self._max_await_ms
            )
        except OperationFailure as exc:
            if self._token is None or exc.code not in CANNOT_RESUME:
                raise
            logger.warning("the access change stream can't resume: changes were lost")
            self._token = None
            for subscriber in self._subscribers:
                subscriber.on_gap()
            sent = time.monotonic()
            stream = await self._database.watch(pipeline, max_await_time_ms=self._max_await_ms)
        self._stream = stream
        if self._token is None:
            self._token = stream.resume_token
        self._batch_sent = sent
        if _buffered(stream) == 0:
            self._caught_up_at = sent

    async def _run(self) -> None:
        """Hand each change to the subscribers, whichever worker made it; resume where it was
        after a failure (reopened after a growing pause)."""
        delay = RETRY_DELAY
        while not self._stopping:
            try:
                if self._stream is None:
                    await self._open()
                stream = self._stream
                assert stream is not None  # noqa: S101 -- opened just above
                before = _buffered(stream)
                sent = time.monotonic()
                event = await stream.try_next()
                if event is None or before == 0:
                    self._batch_sent = sent  # this call fetched a batch
                if event is not None:
                    with _skipped_if_unreadable(event):
                        for subscriber in self._subscribers:
                            await subscriber.on_change(event)
            except PyMongoError as exc:
                logger.warning("access change stream failed, resuming in %ss: %s", delay, exc)
                self._interrupted()
                await close_quietly(self._stream)
                self._stream = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            if event is None and not stream.alive:
                # Invalidated (e.g. the database was dropped): reopen after a pause rather
                # than spin on a closed stream.
                logger.warning("access change stream closed by the server; reopening")
                self._interrupted()
                self._stream = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            delay = RETRY_DELAY
            # Only once handed out: a failure above resumes before it.
            self._token = stream.resume_token if event is None else event["_id"]
            if event is None or _buffered(stream) == 0:
                self._caught_up_at = self._batch_sent

    def _interrupted(self) -> None:
        self._caught_up_at = None
        for subscriber in self._subscribers:
            subscriber.on_interrupted()


def _buffered(stream: Any) -> int:
    """How many changes the stream has received and not handed out yet; -1 if unknown.

    pymongo has no public way to tell a change taken from the last batch from one a new
    getMore fetched, which is what says how current the stream is: read its cursor's buffer,
    and when that isn't there (another pymongo, a test's stream), say so, and the watcher
    then counts only empty getMores as caught up.
    """
    data = getattr(getattr(stream, "_cursor", None), "_data", None)
    return len(data) if data is not None else -1


@contextlib.contextmanager
def _skipped_if_unreadable(event: Mapping[str, Any]) -> Iterator[None]:
    """A change a subscriber can't make sense of (a document of an unexpected shape) is
    logged and skipped: failing the task would end the stream, revocations included, for
    everyone. Database errors go on up (the stream resumes before the change)."""
    try:
        yield
    except PyMongoError:
        raise
    except Exception:
        logger.exception("skipped a change it could not read: %s", event.get("_id"))


# ---- changes made by this worker ----


def changed_here(collection: str, *ids: Any) -> None:
    """Tell this worker at once that these documents changed who may access what: documents
    of `collection` by _id ("sessions", "memberships", "lists" by a membership's list), or for
    "users" everything that decides what the user may access. Other workers learn it from
    their stream. Heard by the listener the request bound (context.bind_access_listener): a
    request's context belongs to the worker (app) that serves it, so two apps in one process
    stay two workers; outside a request, a no-op. Inside `changes_held` (a transaction), held
    until it says whether they were committed."""
    if not ids:
        return
    held = _held.get()
    if held is not None:
        held.changes.append((collection, ids))
    elif (listener := access_listener()) is not None:
        listener(collection, ids)


class HeldChanges:
    """The `changed_here` calls of a transaction, not announced yet."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, tuple[Any, ...]]] = []

    def forget(self) -> None:
        """Drop what was held: the writes were rolled back (an attempt retried, or given up)."""
        self.changes.clear()

    def announce(self) -> None:
        """Tell this worker what was held (the writes were committed), once."""
        changes, self.changes = self.changes, []
        if (listener := access_listener()) is not None:
            for collection, ids in changes:
                listener(collection, ids)


_held: ContextVar[HeldChanges | None] = ContextVar("changes_held", default=None)


@contextlib.contextmanager
def changes_held() -> Iterator[HeldChanges]:
    """Hold this task's `changed_here` calls until the caller announces or forgets them.

    A transaction's writes are seen by nobody before it commits: announced at once, the cache
    would drop its entries and a parallel request could read the old state back into it
    before the commit, to be trusted after it; and a rolled-back write must not be announced
    at all. So the transaction's runner (core/transactions.py) announces them after the commit.
    """
    held = HeldChanges()
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)
