"""How a stream ends: its release however the response ends, the exit-signal hook, and the
feed's tasks cancelled until they end."""

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from datetime import timedelta
from types import FrameType
from typing import Any

import pytest
from beanie import PydanticObjectId
from pymongo.errors import AutoReconnect
from starlette.requests import ClientDisconnect

from service.core.clock import utc_now
from service.core.tasks import cancel_until_done as _cancel_until_done
from service.events import changes
from service.events import feed as feed_module
from service.events.changes import Change
from service.events.feed import ChangeFeed
from service.events.service import OpenStream
from service.events.sse import (
    EventStreamResponse,
    _events,
    change_frame,
    list_frame,
    sse_frame,
    streams_end_on_exit_signal,
)


def test_a_frame_without_an_id_keeps_the_clients_last_event_id() -> None:
    assert sse_frame("revoked", None, "{}") == "event: revoked\ndata: {}\n\n"
    change = Change("created", "8200AB", PydanticObjectId(), {"id": "1", "text": "t"})
    assert change_frame(change) == 'event: created\nid: 8200AB\ndata: {"id":"1","text":"t"}\n\n'


def test_list_events_have_no_id_they_are_not_resumable() -> None:
    list_id = PydanticObjectId()
    assert list_frame(changes.list_removed(list_id)) == (
        f'event: list_removed\ndata: {{"id":"{list_id}"}}\n\n'
    )


async def test_a_stream_says_its_lists_then_skips_those_taken_away() -> None:
    feed = ChangeFeed()
    mine, shared = PydanticObjectId(), PydanticObjectId()
    subscription = feed.subscribe(PydanticObjectId(), lists=[mine, shared])
    stream = OpenStream(
        subscription,
        None,
        ready_id="8200AA",
        until=utc_now() + timedelta(minutes=1),
        lists=frozenset([mine, shared]),
    )
    queued = Change("created", "8200AB", shared, {"id": "1"})
    subscription.queue.put_nowait(queued)
    feed._take_away(subscription, shared)  # removed before that change was sent
    subscription.queue.put_nowait(Change("created", "8200AC", mine, {"id": "2"}))
    feed.close_subscribers()
    frames = [frame async for frame in _events(stream, heartbeat=60)]
    assert frames == [
        sse_frame(
            "ready",
            "8200AA",
            json.dumps(
                {"resumed": False, "lists": sorted([str(mine), str(shared)])}, separators=(",", ":")
            ),
        ),
        list_frame(changes.list_removed(shared)),
        change_frame(Change("created", "8200AC", mine, {"id": "2"})),
    ]


async def test_an_exit_signal_ends_every_stream_then_runs_the_previous_handler() -> None:
    feed = ChangeFeed()
    subscription = feed.subscribe(PydanticObjectId())
    received: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        with streams_end_on_exit_signal(feed):
            signal.raise_signal(signal.SIGTERM)
            assert await asyncio.wait_for(subscription.queue.get(), 1) is None
        assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is previous  # put back on the way out
    finally:
        signal.signal(signal.SIGTERM, original)


async def swallows_one_cancellation(ended: asyncio.Event) -> None:
    """As a feed task whose cancellation got lost inside the driver: it goes on running."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    try:
        await asyncio.sleep(3600)
    finally:
        ended.set()


async def test_a_task_that_loses_a_cancellation_is_cancelled_until_it_ends() -> None:
    ended = asyncio.Event()
    task = asyncio.create_task(swallows_one_cancellation(ended))
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel_until_done([task]), 5)
    assert ended.is_set()
    assert task.cancelled()


async def test_a_stop_cancelled_midway_still_ends_every_task() -> None:
    ended = [asyncio.Event() for _ in range(2)]
    tasks = [asyncio.create_task(swallows_one_cancellation(event)) for event in ended]
    await asyncio.sleep(0)
    stopping = asyncio.create_task(_cancel_until_done(tasks))
    await asyncio.sleep(0)
    stopping.cancel()
    await asyncio.wait({stopping}, timeout=5)
    assert stopping.cancelled()  # the caller's cancellation is not swallowed...
    assert all(event.is_set() for event in ended)  # ...and nothing was left running


class _LosesEveryCancellation:
    """A change stream on a dead database whose driver loses every cancellation: each wait
    ends in a failure, as pymongo's does when a cancellation arrives just as its wait_for
    times out."""

    alive = True
    resume_token = None

    async def try_next(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        raise AutoReconnect("connection refused")

    async def close(self) -> None:
        pass


async def test_a_feed_loop_that_loses_every_cancellation_still_ends_when_the_feed_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed_module, "RETRY_DELAY", 0)
    feed = ChangeFeed()
    feed._stream = _LosesEveryCancellation()  # type: ignore[assignment]  # a stand-in stream
    task = asyncio.create_task(feed._run())
    await asyncio.sleep(0)
    monkeypatch.setattr(feed, "_open", _LosesEveryCancellation().try_next)
    feed._tasks = [task]
    await asyncio.wait_for(feed.stop(), 5)
    assert task.done()


async def test_a_response_that_never_starts_still_releases_its_stream() -> None:
    released: list[bool] = []
    started: list[bool] = []

    async def body() -> AsyncIterator[str]:
        started.append(True)
        yield "event: ready\n\n"

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        raise OSError("the client is gone")

    response = EventStreamResponse(body(), release=lambda: released.append(True))
    with pytest.raises(ClientDisconnect):
        await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    assert (started, released) == ([], [True])
