"""The live change feed of your todos, as server-sent events."""

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, status
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.core.clock import utc_now
from service.core.deps import ClockDep, SettingsDep
from service.errors import (
    BadRequest,
    Gone,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from service.events import store
from service.events.deps import FeedDep, StreamAccessDep, TokenAccess
from service.events.feed import (
    RESUME_TOKEN_PATTERN,
    REVOKED_FRAME,
    CatchUp,
    InvalidResumeTokenError,
    ResumeTokenTooOldError,
    Subscription,
    UserStreamsFullError,
    WorkerStreamsFullError,
    sse_frame,
)
from service.events.schemas import EventTicketOut, ReadyEventData, RevokedEventData

router = APIRouter(tags=["events"], responses=error_responses(Unauthorized))

NO_CHANGE_STREAMS = (
    "The live change feed needs change streams, which this database server doesn't support "
    "(a replica set is required); use delta sync (GET /api/todos?updated_since=...) instead"
)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# When to try again after a 429 (too many streams of yours) or 503 (this worker is full).
STREAM_RETRY_AFTER_SECONDS = 10


def _event_item(name: str, data_schema: dict[str, Any], *, has_id: bool = True) -> dict[str, Any]:
    """One kind of event in the stream, as OpenAPI 3.2's `itemSchema` describes items."""
    return {
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data_schema,
            },
        },
        "required": ["event", "data", "id"] if has_id else ["event", "data"],
    }


def _todo_ref(model: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model}"}


# Each event the stream sends (`: heartbeat` comments aren't events: parsers skip them).
EVENT_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One server-sent event: `ready` first (its `id` is the feed's position), then "
        "`created`, `updated` and `deleted` (each `id` a resume token for Last-Event-ID), and "
        "`revoked` (no `id`) as the last event when the session ends. After "
        "FEED_HEARTBEAT_SECONDS of silence the stream sends a `: heartbeat` comment line, "
        "which is not an event."
    ),
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["event", "data"],
    "oneOf": [
        _event_item("ready", ReadyEventData.model_json_schema()),
        _event_item("created", _todo_ref("TodoPublic")),
        _event_item("updated", _todo_ref("TodoPublic")),
        _event_item("deleted", _todo_ref("TodoTombstone")),
        _event_item("revoked", RevokedEventData.model_json_schema(), has_id=False),
    ],
}


@router.post(
    "/todos/events/ticket",
    status_code=status.HTTP_201_CREATED,
    summary="Get a one-time ticket for the change feed",
)
async def create_event_ticket(access: TokenAccess) -> EventTicketOut:
    """A ticket that opens `GET /api/todos/events?ticket=...` once, within 60 seconds.

    For browsers' EventSource, which can't send an Authorization header. The ticket belongs to
    the session that asked for it: it is refused once that session has ended, and the stream
    it opens closes when the access token used here expires or the session ends.
    """
    ticket = await store.create_ticket(
        owner_id=access.user_id, session_id=access.session_id, stream_until=access.until
    )
    return EventTicketOut(ticket=ticket, expires_in=int(store.TICKET_LIFETIME.total_seconds()))


@router.get(
    "/todos/events",
    summary="Follow changes to your todos live (server-sent events)",
    response_class=StreamingResponse,
    responses={
        status.HTTP_200_OK: {
            "content": {"text/event-stream": {"itemSchema": EVENT_ITEM_SCHEMA}},
            "description": (
                "`event: ready` first, then `event: created|updated|deleted` with `id: <resume "
                "token>` and `data: <todo JSON or tombstone>`; `: heartbeat` comments; "
                "`event: revoked` last if the session ends."
            ),
        },
        **error_responses(BadRequest, Gone, TooManyRequests, ServiceUnavailable),
    },
)
async def todo_events(
    access: StreamAccessDep,
    feed: FeedDep,
    settings: SettingsDep,
    clock: ClockDep,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=1024,
            description="Resume after this event (the `id` of the last event received).",
            json_schema_extra={"pattern": RESUME_TOKEN_PATTERN},
        ),
    ] = None,
) -> StreamingResponse:
    """Your todos' changes as they happen, resumable with `Last-Event-ID`.

    Authenticate with a bearer token or a `ticket`. The stream closes when the access token
    expires (reconnect with a fresh one and `Last-Event-ID`), on shutdown, and with
    `event: revoked` when the session ends (logout, password change, account deletion). A
    malformed `Last-Event-ID` is a 400; one too old to resume from is a 410 (use delta sync).
    At most MAX_STREAMS_PER_USER streams per user (429) and MAX_STREAMS_PER_WORKER per
    server process (503) are open at once.
    """
    if not feed.available:
        raise ServiceUnavailable(NO_CHANGE_STREAMS)
    # Subscribe before catching up, so nothing between the two is lost.
    try:
        subscription = await feed.open(access.user_id, access.session_id)
    except WorkerStreamsFullError as exc:
        raise ServiceUnavailable(
            "This server has as many live feed streams open as it serves: try again shortly",
            headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
        ) from exc
    except UserStreamsFullError as exc:
        raise TooManyRequests(
            f"You already have {settings.max_streams_per_user} live feed streams open: "
            "close one first",
            retry_after=STREAM_RETRY_AFTER_SECONDS,
        ) from exc
    catch_up: CatchUp | None = None
    try:
        # Checked after subscribing: a session that ends before this is refused here, one
        # that ends after it reaches the subscription through the feed's session watch.
        session_until = await store.session_expiry(
            session_id=access.session_id, user_id=access.user_id, now=clock()
        )
        if session_until is None:
            raise Unauthorized("The session has ended: log in again")
        if last_event_id is not None:
            catch_up = await feed.catch_up(access.user_id, last_event_id)
    except InvalidResumeTokenError as exc:
        feed.unsubscribe(subscription)
        raise BadRequest("Last-Event-ID is not an event id of this feed") from exc
    except ResumeTokenTooOldError as exc:
        feed.unsubscribe(subscription)
        raise Gone(
            "Last-Event-ID is too old to resume from: catch up with delta sync "
            "(GET /api/todos?updated_since=...) and open a new stream"
        ) from exc
    except BaseException:
        feed.unsubscribe(subscription)
        raise
    ready_id = last_event_id or subscription.token or ""

    def release() -> None:
        if catch_up is not None:
            feed.discard(catch_up)
        feed.unsubscribe(subscription)

    return EventStreamResponse(
        _events(
            subscription,
            catch_up,
            ready_id=ready_id,
            until=min(access.until, session_until),
            heartbeat=settings.feed_heartbeat_seconds,
        ),
        release=release,
        media_type="text/event-stream",
        headers=SSE_HEADERS,
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


async def _events(
    subscription: Subscription,
    catch_up: CatchUp | None,
    *,
    ready_id: str,
    until: datetime,
    heartbeat: float,
) -> AsyncIterator[str]:
    resumed = catch_up is not None and catch_up.behind
    yield sse_frame("ready", ready_id, ReadyEventData(resumed=resumed).model_dump_json())
    if catch_up is not None:
        async for change in catch_up.changes():
            if subscription.revoked:
                break
            yield change.frame()
        if subscription.revoked:
            yield REVOKED_FRAME
            return
        if catch_up.truncated:
            return  # FEED_CATCH_UP_LIMIT changes sent: the client resumes from the last
    while True:
        remaining = (until - utc_now()).total_seconds()
        if remaining <= 0:
            return  # the access token expired: the client reconnects with a fresh one
        try:
            item = await asyncio.wait_for(subscription.queue.get(), min(heartbeat, remaining))
        except TimeoutError:
            if utc_now() < until:
                yield ": heartbeat\n\n"
            continue
        if item is None:
            if subscription.revoked:
                yield REVOKED_FRAME
            return  # revoked, shutdown, or too slow a reader: the client resumes
        if catch_up is not None and catch_up.covers(item):
            continue  # the catch-up covered it
        yield item.frame()
