"""Access to the change feed: by bearer token, or by one-time ticket; the feed itself."""

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from service.accounts.deps import BearerToken, TokenSettingsDep, authenticate_token
from service.core.deps import ClockDep
from service.core.store import id_of
from service.errors import Unauthorized
from service.events import store
from service.events.feed import RESUME_TOKEN_PATTERN, ChangeFeed
from service.events.service import StreamAccess


async def get_feed(request: Request) -> ChangeFeed:
    feed: ChangeFeed = request.state.feed
    return feed


FeedDep = Annotated[ChangeFeed, Depends(get_feed)]


async def get_bearer_access(
    token: BearerToken, tokens: TokenSettingsDep, clock: ClockDep
) -> StreamAccess:
    """The bearer token's user and session, until the token expires (one decode, one query)."""
    auth, until = await authenticate_token(token, tokens, clock)
    return StreamAccess(user_id=id_of(auth.user), session_id=auth.session_id, until=until)


TICKET_MAX_LENGTH = 128


async def get_ticket_or_bearer_access(
    token: BearerToken,
    tokens: TokenSettingsDep,
    clock: ClockDep,
    ticket: Annotated[
        str | None,
        Query(
            max_length=TICKET_MAX_LENGTH,
            description="A one-time ticket from POST /api/todos/events/ticket, instead of a token.",
        ),
    ] = None,
) -> StreamAccess:
    """By a one-time ticket (EventSource can't send Authorization) if given, else by the
    bearer token; the ticket is used up here."""
    if ticket is None:
        return await get_bearer_access(token, tokens, clock)
    redeemed = await store.redeem_ticket(ticket=ticket)
    if redeemed is None:
        raise Unauthorized("Invalid, expired or already used ticket")
    return StreamAccess(
        user_id=redeemed.owner_id, session_id=redeemed.session_id, until=redeemed.stream_until
    )


# Who may get a ticket: a bearer token only.
BearerAccess = Annotated[StreamAccess, Depends(get_bearer_access)]
# Who may open a stream: a ticket, or a bearer token.
TicketOrBearerAccess = Annotated[StreamAccess, Depends(get_ticket_or_bearer_access)]
LastEventId = Annotated[
    str | None,
    Header(
        max_length=1024,
        description="Resume after this event (the `id` of the last event received).",
        json_schema_extra={"pattern": RESUME_TOKEN_PATTERN},
    ),
]
