"""Access to the change feed: by bearer token or by one-time ticket."""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from beanie import PydanticObjectId
from fastapi import Depends, Query, Request

from service.accounts.deps import BearerToken, TokenSettingsDep, authenticate_token
from service.core.deps import ClockDep
from service.core.store import id_of
from service.errors import Unauthorized
from service.events import store
from service.events.feed import ChangeFeed


async def get_feed(request: Request) -> ChangeFeed:
    feed: ChangeFeed = request.state.feed
    return feed


FeedDep = Annotated[ChangeFeed, Depends(get_feed)]


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """Who may read a change feed stream, on which session, and until when (their access
    token's expiry). Whether the session is still active is checked when the stream opens."""

    user_id: PydanticObjectId
    session_id: str
    until: datetime


async def get_token_access(
    token: BearerToken, tokens: TokenSettingsDep, clock: ClockDep
) -> StreamAccess:
    """The current user and session, and when their access token expires (decoded once)."""
    auth, until = await authenticate_token(token, tokens, clock)
    return StreamAccess(user_id=id_of(auth.user), session_id=auth.session_id, until=until)


TICKET_MAX_LENGTH = 128


async def get_stream_access(
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
    """Access to the change feed: by a one-time ticket (EventSource) or a bearer token."""
    if ticket is None:
        return await get_token_access(token, tokens, clock)
    redeemed = await store.redeem_ticket(ticket=ticket)
    if redeemed is None:
        raise Unauthorized("Invalid, expired or already used ticket")
    return StreamAccess(
        user_id=redeemed.owner_id, session_id=redeemed.session_id, until=redeemed.stream_until
    )


TokenAccess = Annotated[StreamAccess, Depends(get_token_access)]
StreamAccessDep = Annotated[StreamAccess, Depends(get_stream_access)]
