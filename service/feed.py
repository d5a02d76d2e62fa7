"""The live change feed: one MongoDB change stream per worker, fanned out in memory.

`ChangeFeed` is started and stopped by the app's lifespan. It watches the todos collection
once and hands each change to the subscribers of the todo's owner (bounded queues; a
subscriber that can't keep up is closed and resumes with its Last-Event-ID). A resuming client
first catches up on a change stream of its own (filtered by owner on the server) and then
reads the shared one, skipping what the catch-up already gave it.

The feed runs outside any request, so no per-request database time budget applies to it; the
catch-up runs in a fresh context for the same reason.
"""

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal

import pymongo
from beanie import PydanticObjectId
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from service.models import TODO_DEFAULTS
from service.schemas import TodoPublic, TodoTombstone

logger = logging.getLogger(__name__)

EventKind = Literal["created", "updated", "deleted"]
RESUME_TOKEN_PATTERN = r"^[0-9A-Fa-f]{2,1024}$"  # noqa: S105 -- a pattern, not a secret
_RESUME_TOKEN_RE = re.compile(RESUME_TOKEN_PATTERN)
# Change-stream errors meaning "that point is gone from the server's history".
_HISTORY_LOST = {280, 286}  # ChangeStreamFatalError, ChangeStreamHistoryLost
_OPERATIONS: dict[str, Any] = {
    "$match": {"operationType": {"$in": ["insert", "update", "replace"]}}
}
RETRY_DELAY = 1.0
# On stop: how often to repeat the cancellation of the feed task, and how long closing the
# change stream may take (with the database down it would wait a server selection timeout).
STOP_POLL_SECONDS = 0.1
CLOSE_TIMEOUT_SECONDS = 1.0


class FeedUnavailableError(Exception):
    """The server can't do change streams (a standalone mongod, the mocked tier)."""


class InvalidResumeTokenError(ValueError):
    """Last-Event-ID is not a resume token of this feed."""


class ResumeTokenTooOldError(Exception):
    """The server no longer has the history after that resume token."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a todo, ready to send: kind, resume token, owner and JSON data."""

    kind: EventKind
    token: str
    owner_id: PydanticObjectId
    data: dict[str, Any]

    def frame(self) -> str:
        """The server-sent-event frame of this change."""
        return sse_frame(self.kind, self.token, json.dumps(self.data, separators=(",", ":")))


def sse_frame(event: str, event_id: str, data: str) -> str:
    return f"event: {event}\nid: {event_id}\ndata: {data}\n\n"


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
    # Read as stored (no Todo built and dumped again): fields it lacks take the defaults.
    stored = {**TODO_DEFAULTS, **document}
    owner_id = PydanticObjectId(stored["owner_id"])
    updated = (event.get("updateDescription") or {}).get("updatedFields") or {}
    token = event["_id"]["_data"]
    if updated.get("deleted_at") is not None:
        tombstone = TodoTombstone(
            id=str(stored["_id"]),
            deleted_at=updated["deleted_at"],
            version=updated.get("version", stored["version"]),
        )
        return Change("deleted", token, owner_id, tombstone.model_dump(mode="json"))
    if stored["deleted_at"] is not None:
        return None
    kind: EventKind = "created" if event["operationType"] == "insert" else "updated"
    return Change(kind, token, owner_id, TodoPublic.from_stored(stored).model_dump(mode="json"))


@dataclass(eq=False)
class Subscription:
    """One open event stream: its owner's changes, queued; None in the queue means "close"."""

    owner_id: PydanticObjectId
    token: str | None
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)


class ChangeFeed:
    """The worker's one change stream on the todos collection, and its subscribers."""

    def __init__(self, *, queue_size: int = 1000, catch_up_limit: int = 10_000) -> None:
        self._collection: AsyncCollection[dict[str, Any]] | None = None
        self._queue_size = queue_size
        self._catch_up_limit = catch_up_limit
        self._subscribers: dict[PydanticObjectId, set[Subscription]] = {}
        self._token: Mapping[str, Any] | None = None
        self._stream: AsyncChangeStream[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._signal_handlers: dict[int, Any] = {}
        self.available = False

    @property
    def subscriber_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    async def start(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        """Watch `collection`; if the server can't, the feed stays unavailable."""
        self._collection = collection
        try:
            self._stream = await self._open()
        except (PyMongoError, NotImplementedError, AttributeError, TypeError) as exc:
            logger.warning("live change feed unavailable (no change streams): %s", exc)
            return
        self.available = True
        self._token = self._stream.resume_token
        # Run in an empty context: no request's settings (e.g. a time budget) leak into it.
        self._task = asyncio.create_task(self._run(), context=contextvars.Context())
        self._install_signal_hook()

    async def stop(self) -> None:
        """Close every subscriber's stream and the change stream."""
        self._remove_signal_hook()
        self.close_subscribers()
        if self._task is not None:
            await _cancel_until_done(self._task)
            self._task = None
        if self._stream is not None:
            with contextlib.suppress(PyMongoError), pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
                await self._stream.close()
            self._stream = None
        self.available = False

    def close_subscribers(self) -> None:
        """End every open event stream (on shutdown): clients reconnect with Last-Event-ID."""
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                self._close(subscription)

    def subscribe(self, owner_id: PydanticObjectId) -> Subscription:
        """A new subscriber to the owner's changes, from the feed's current position on."""
        token = self._token["_data"] if self._token else None
        subscription = Subscription(owner_id, token, asyncio.Queue(self._queue_size + 1))
        self._subscribers.setdefault(owner_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.owner_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.owner_id]

    async def catch_up(self, owner_id: PydanticObjectId, last_event_id: str) -> list[Change]:
        """The owner's changes after `last_event_id`, up to now, from a stream of its own.

        InvalidResumeTokenError for a token the server can't use, ResumeTokenTooOldError if
        its history is gone (or more than `catch_up_limit` changes would be needed).
        """
        token = parse_resume_token(last_event_id)
        task = asyncio.create_task(self._read_since(owner_id, token), context=contextvars.Context())
        return await task

    async def _read_since(self, owner_id: PydanticObjectId, token: dict[str, str]) -> list[Change]:
        pipeline: list[dict[str, Any]] = [
            _OPERATIONS,
            {"$match": {"fullDocument.owner_id": owner_id}},
        ]
        changes: list[Change] = []
        if self._collection is None:
            raise FeedUnavailableError
        try:
            stream = await self._collection.watch(
                pipeline, full_document="updateLookup", resume_after=token, max_await_time_ms=1
            )
            async with stream:
                while (event := await stream.try_next()) is not None:
                    change = to_change(event)
                    if change is not None and change.owner_id == owner_id:
                        changes.append(change)
                    if len(changes) > self._catch_up_limit:
                        raise ResumeTokenTooOldError("too many changes to catch up on")
        except OperationFailure as exc:
            if exc.code in _HISTORY_LOST:
                raise ResumeTokenTooOldError(str(exc)) from exc
            raise InvalidResumeTokenError(str(exc)) from exc
        return changes

    async def _open(self) -> AsyncChangeStream[dict[str, Any]]:
        if self._collection is None:
            raise FeedUnavailableError
        return await self._collection.watch(
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
                if self._stream is not None:
                    with contextlib.suppress(PyMongoError):
                        await self._stream.close()
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

    def _close(self, subscription: Subscription) -> None:
        self.unsubscribe(subscription)
        with contextlib.suppress(asyncio.QueueFull):
            subscription.queue.put_nowait(None)

    # uvicorn waits for open responses before running the lifespan's shutdown, and event
    # streams never end by themselves: on SIGINT/SIGTERM, close them first, then let uvicorn's
    # own handler run.
    def _install_signal_hook(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue
            self._signal_handlers[signum] = previous
            signal.signal(signum, self._on_signal(loop, previous))

    def _on_signal(
        self, loop: asyncio.AbstractEventLoop, previous: Callable[[int, FrameType | None], Any]
    ) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.close_subscribers)
            previous(signum, frame)

        return handler

    def _remove_signal_hook(self) -> None:
        for signum, previous in self._signal_handlers.items():
            signal.signal(signum, previous)
        self._signal_handlers.clear()


async def _cancel_until_done(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it to end, cancelling again for as long as it runs.

    One cancellation can get lost inside pymongo: on Python 3.11, asyncio.wait_for (which
    pymongo uses to send a command and in its server selection loop) swallows a cancellation
    that arrives just as what it waits for completes. With the database down, the command then
    fails, `_run` takes that for a failed stream and resumes: the task would run, and the
    shutdown wait, forever.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task
