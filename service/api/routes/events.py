"""The live change feed of your todos, as server-sent events."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, status
from fastapi.responses import StreamingResponse

from service import crud
from service.api.deps import FeedDep, SettingsDep, StreamAccessDep, TokenAccess
from service.exceptions import (
    BadRequest,
    Gone,
    ServiceUnavailable,
    Unauthorized,
    error_responses,
)
from service.feed import (
    RESUME_TOKEN_PATTERN,
    Change,
    ChangeFeed,
    InvalidResumeTokenError,
    ResumeTokenTooOldError,
    Subscription,
    sse_frame,
)
from service.models import utc_now
from service.schemas import EventTicketOut

router = APIRouter(tags=["events"], responses=error_responses(Unauthorized))

NO_CHANGE_STREAMS = (
    "The live change feed needs change streams, which this database server doesn't support "
    "(a replica set is required); use delta sync (GET /api/todos?updated_since=...) instead"
)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post(
    "/todos/events/ticket",
    status_code=status.HTTP_201_CREATED,
    summary="Get a one-time ticket for the change feed",
)
async def create_event_ticket(access: TokenAccess) -> EventTicketOut:
    """A ticket that opens `GET /api/todos/events?ticket=...` once, within 60 seconds.

    For browsers' EventSource, which can't send an Authorization header. The stream it opens
    closes when the access token used here expires.
    """
    ticket = await crud.tickets.create_ticket(owner_id=access.user_id, stream_until=access.until)
    return EventTicketOut(
        ticket=ticket, expires_in=int(crud.tickets.TICKET_LIFETIME.total_seconds())
    )


@router.get(
    "/todos/events",
    summary="Follow changes to your todos live (server-sent events)",
    response_class=StreamingResponse,
    responses={
        status.HTTP_200_OK: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": (
                "`event: ready` first, then `event: created|updated|deleted` with `id: <resume "
                "token>` and `data: <todo JSON or tombstone>`; `: heartbeat` comments."
            ),
        },
        **error_responses(BadRequest, Gone, ServiceUnavailable),
    },
)
async def todo_events(
    access: StreamAccessDep,
    feed: FeedDep,
    settings: SettingsDep,
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
    expires (reconnect with a fresh one and `Last-Event-ID`) and on shutdown. A malformed
    `Last-Event-ID` is a 400; one too old to resume from is a 410 (use delta sync).
    """
    if not feed.available:
        raise ServiceUnavailable(NO_CHANGE_STREAMS)
    # Subscribe before catching up, so nothing between the two is lost.
    subscription = feed.subscribe(access.user_id)
    backlog: list[Change] = []
    if last_event_id is not None:
        try:
            backlog = await feed.catch_up(access.user_id, last_event_id)
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
    return StreamingResponse(
        _events(
            feed,
            subscription,
            backlog,
            ready_id=ready_id,
            until=access.until,
            heartbeat=settings.feed_heartbeat_seconds,
        ),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _events(
    feed: ChangeFeed,
    subscription: Subscription,
    backlog: list[Change],
    *,
    ready_id: str,
    until: datetime,
    heartbeat: float,
) -> AsyncIterator[str]:
    try:
        yield sse_frame("ready", ready_id, json.dumps({"resumed": bool(backlog)}))
        # What the catch-up gave may also be queued from the shared stream: send it once.
        sent = {change.token for change in backlog}
        for change in backlog:
            yield change.frame()
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
                return  # shutdown, or too slow a reader: the client resumes
            if item.token not in sent:
                yield item.frame()
    finally:
        feed.unsubscribe(subscription)
