"""Server-sent events: the frames, the streaming response, and how a stream ends.

A stream ends when its access token expires (the client reconnects with a fresh one and
Last-Event-ID), when its session ends (with `event: revoked`), when its reader is too slow or
the server shuts down (the feed closes its subscription: the client resumes with
Last-Event-ID), after FEED_CATCH_UP_LIMIT caught-up changes, and when the client goes away.
However it ends, its subscription and stream slot are released (EventStreamResponse).
"""

import asyncio
import json
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.core.clock import utc_now
from service.events.changes import Change, ListEvent
from service.events.feed import ChangeFeed
from service.events.schemas import ReadyEventData, RevokedEventData
from service.events.service import OpenStream

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT = ": heartbeat\n\n"


def sse_frame(event: str, event_id: str | None, data: str) -> str:
    """One server-sent event; without an `id` line the client keeps its last event id."""
    id_line = "" if event_id is None else f"id: {event_id}\n"
    return f"event: {event}\n{id_line}data: {data}\n\n"


def change_frame(change: Change) -> str:
    """The event of a change: its kind, its resume token as id, its data as compact JSON."""
    return sse_frame(change.kind, change.token, _json(change.data))


def list_frame(event: ListEvent) -> str:
    """A list event: no id (it isn't resumable), so the client keeps its last todo event's."""
    return sse_frame(event.kind, None, _json(event.data))


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


REVOKED_FRAME = sse_frame(
    "revoked",
    None,
    RevokedEventData(detail="The session has ended: log in again").model_dump_json(),
)


class EventStreamResponse(StreamingResponse):
    """A streaming response that calls `release` however it ends: finished, cancelled by a
    disconnect, or failed before its body even started (a generator that never ran can't
    clean up after itself, and its subscription would hold a stream slot for good)."""

    def __init__(
        self, content: AsyncIterator[str], *, release: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def event_stream_response(
    feed: ChangeFeed, stream: OpenStream, *, heartbeat: float
) -> EventStreamResponse:
    """The response that sends `stream`'s events, then releases it back to `feed`."""

    def release() -> None:
        if stream.catch_up is not None:
            feed.discard(stream.catch_up)
        feed.unsubscribe(stream.subscription)

    return EventStreamResponse(
        _events(stream, heartbeat=heartbeat),
        release=release,
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _events(stream: OpenStream, *, heartbeat: float) -> AsyncIterator[str]:
    subscription, catch_up = stream.subscription, stream.catch_up
    resumed = catch_up is not None and catch_up.behind
    ready = ReadyEventData(resumed=resumed, lists=sorted(str(list_id) for list_id in stream.lists))
    yield sse_frame("ready", stream.ready_id, ready.model_dump_json())
    if catch_up is not None:
        async for change in catch_up.changes():
            if subscription.revoked:
                break
            yield change_frame(change)
        if subscription.revoked:
            yield REVOKED_FRAME
            return
        if catch_up.truncated:
            return  # FEED_CATCH_UP_LIMIT changes sent: the client resumes from the last
    while True:
        remaining = (stream.until - utc_now()).total_seconds()
        if remaining <= 0:
            return  # the access token expired: the client reconnects with a fresh one
        try:
            item = await asyncio.wait_for(subscription.queue.get(), min(heartbeat, remaining))
        except TimeoutError:
            if utc_now() < stream.until:
                yield HEARTBEAT
            continue
        if item is None:
            if subscription.revoked:
                yield REVOKED_FRAME
            return  # revoked, shutdown, or too slow a reader: the client resumes
        if isinstance(item, ListEvent):
            yield list_frame(item)
        elif catch_up is not None and catch_up.covers(item):
            continue  # the catch-up covered it
        elif subscription.reads(item.list_id):
            # Else queued before its list was taken away (list_removed follows): skipped.
            yield change_frame(item)


@contextmanager
def streams_end_on_exit_signal(feed: ChangeFeed) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM first end every open stream, then run the handler
    they had (uvicorn's, which starts the shutdown).

    uvicorn waits for open responses to finish before it runs the lifespan's shutdown (until
    its graceful-shutdown timeout), and an event stream never finishes by itself: without
    this, every shutdown would wait that timeout out. Signals can only be handled in the
    main thread; elsewhere (an in-process test server) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous_handlers: dict[signal.Signals, Callable[[int, FrameType | None], Any]] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if callable(previous):
            previous_handlers[signum] = previous
            signal.signal(signum, _ending_streams_first(feed, loop, previous))
    try:
        yield
    finally:
        for signum, previous in previous_handlers.items():
            signal.signal(signum, previous)


def _ending_streams_first(
    feed: ChangeFeed,
    loop: asyncio.AbstractEventLoop,
    previous: Callable[[int, FrameType | None], Any],
) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(feed.close_subscribers)
        previous(signum, frame)

    return handler
