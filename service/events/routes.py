"""The live change feed of your todos, as server-sent events."""

from fastapi import APIRouter, status
from fastapi.responses import StreamingResponse

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
from service.events.deps import BearerAccess, FeedDep, LastEventId, TicketOrBearerAccess
from service.events.schemas import EVENT_STREAM_RESPONSE, EventTicketOut
from service.events.service import open_stream
from service.events.sse import event_stream_response

router = APIRouter(tags=["events"], responses=error_responses(Unauthorized))


@router.post(
    "/todos/events/ticket",
    status_code=status.HTTP_201_CREATED,
    summary="Get a one-time ticket for the change feed",
)
async def create_event_ticket(access: BearerAccess) -> EventTicketOut:
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
        status.HTTP_200_OK: EVENT_STREAM_RESPONSE,
        **error_responses(BadRequest, Gone, TooManyRequests, ServiceUnavailable),
    },
)
async def todo_events(
    access: TicketOrBearerAccess,
    feed: FeedDep,
    settings: SettingsDep,
    clock: ClockDep,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Your todos' changes as they happen, resumable with `Last-Event-ID`.

    Authenticate with a bearer token or a `ticket`. The stream closes when the access token
    expires (reconnect with a fresh one and `Last-Event-ID`), on shutdown, and with
    `event: revoked` when the session ends (logout, password change, account deletion). A
    malformed `Last-Event-ID` is a 400; one too old to resume from is a 410 (use delta sync).
    At most MAX_STREAMS_PER_USER streams per user (429) and MAX_STREAMS_PER_WORKER per
    server process (503) are open at once.
    """
    stream = await open_stream(feed, access, last_event_id=last_event_id, clock=clock)
    return event_stream_response(feed, stream, heartbeat=settings.feed_heartbeat_seconds)
