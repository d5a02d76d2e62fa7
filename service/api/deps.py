"""Dependencies, each as an Annotated alias: settings, clock, client IP, current user, todos."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from beanie import PydanticObjectId
from bson.errors import InvalidId
from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import Field

from service import crud
from service.client_ip import resolve_client_ip
from service.config import Settings
from service.crud.sessions import Authenticated
from service.etags import (
    CONDITION_PATTERN,
    MalformedConditionError,
    check_condition,
    if_match_versions,
)
from service.exceptions import BadRequest, NotFound, Unauthorized
from service.feed import ChangeFeed
from service.models import USER_AGENT_MAX_LENGTH, Clock, SessionKey, Todo, User, id_of
from service.request_context import bind_user
from service.security import (
    ExpiredTokenError,
    InvalidTokenError,
    PasswordHasher,
    TokenSettings,
    decode_access_token,
    is_session_id,
)

# auto_error=False: a missing token goes through Unauthorized, like every other 401.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)

# Dependencies are `async def` even when they don't await: FastAPI runs a plain `def` dependency
# in the thread pool, a thread hop per request (measured: ~13% of GET /api/me's CPU; bench/).


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def get_token_settings(request: Request) -> TokenSettings:
    tokens: TokenSettings = request.state.tokens
    return tokens


async def get_password_hasher(request: Request) -> PasswordHasher:
    passwords: PasswordHasher = request.state.passwords
    return passwords


SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenSettingsDep = Annotated[TokenSettings, Depends(get_token_settings)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_client_ip(request: Request) -> str:
    """The caller's IP: the TCP peer, or X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return resolve_client_ip(peer, forwarded, request.state.trusted_proxies)


ClientIP = Annotated[str, Depends(get_client_ip)]


async def get_user_agent(request: Request) -> str:
    """The User-Agent header, cut to what a session stores."""
    return request.headers.get("user-agent", "")[:USER_AGENT_MAX_LENGTH]


UserAgent = Annotated[str, Depends(get_user_agent)]


TOKEN_EXPIRED = "Token expired"  # noqa: S105 -- an error message
# RFC 6750: tells the client this token is done for (here: refresh it), not that it sent none.
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


async def _authenticate(
    token: str | None, tokens: TokenSettings, clock: Clock
) -> tuple[Authenticated, datetime]:
    """The user and session of a valid access token, and when the token expires.

    401 for any unusable token: "Token expired" (with `error="invalid_token"`) for one that is
    valid but for its expiry, so that clients know to refresh; the generic text otherwise.
    One aggregate on sessions (by _id) with a $lookup of the user (by _id): a logged-out,
    expired or deleted session, or a deleted user, is refused on the very next request.
    A `sid` that isn't a session id's shape (an ObjectId of a session from before session ids
    were random, say) is refused without a query.
    """
    if not token:
        raise Unauthorized("Not authenticated")
    try:
        claims = decode_access_token(token, tokens)
        user_id = PydanticObjectId(claims["sub"])
    except ExpiredTokenError as exc:
        raise Unauthorized(TOKEN_EXPIRED, headers=INVALID_TOKEN) from exc
    except (InvalidTokenError, InvalidId) as exc:
        raise Unauthorized from exc
    session_id: str = claims["sid"]
    if not is_session_id(session_id):
        raise Unauthorized
    found = await crud.sessions.authenticate(session_id=session_id, user_id=user_id, now=clock())
    if found is None:
        raise Unauthorized
    bind_user(str(user_id))
    return found, datetime.fromtimestamp(claims["exp"], UTC)


async def get_authenticated(
    token: BearerToken, tokens: TokenSettingsDep, clock: ClockDep
) -> Authenticated:
    """The user and session of a valid access token; 401 for any unusable token."""
    found, _ = await _authenticate(token, tokens, clock)
    return found


CurrentAuth = Annotated[Authenticated, Depends(get_authenticated)]


async def get_current_user(auth: CurrentAuth) -> User:
    """The user the bearer token belongs to (see get_authenticated)."""
    return auth.user


CurrentUser = Annotated[User, Depends(get_current_user)]

OBJECT_ID_PATTERN = r"^[0-9a-fA-F]{24}$"


async def get_todo_id(
    todo_id: Annotated[str, Path(pattern=OBJECT_ID_PATTERN, description="The todo's id.")],
) -> PydanticObjectId:
    return PydanticObjectId(todo_id)


TodoId = Annotated[PydanticObjectId, Depends(get_todo_id)]


async def get_owned_todo(todo_id: TodoId, user: CurrentUser) -> Todo:
    """The current user's todo; 404 for anyone else's, so their ids aren't revealed."""
    todo = await crud.todos.get_todo(owner_id=id_of(user), todo_id=todo_id)
    if todo is None:
        raise NotFound("Todo not found")
    return todo


OwnedTodo = Annotated[Todo, Depends(get_owned_todo)]

ETAG_HEADER_MAX_LENGTH = 2048
MALFORMED_CONDITION = '{} must be * or a comma-separated list of entity tags ("3" or W/"3")'


# The syntax is documented but checked by get_if_match / get_if_none_match, so that a malformed
# value is a 400 naming the header (RFC 9110 syntax), not FastAPI's 422 repeating the pattern.
Condition = Annotated[
    str, Field(max_length=ETAG_HEADER_MAX_LENGTH, json_schema_extra={"pattern": CONDITION_PATTERN})
]


def _condition_header(description: str) -> Any:
    return Header(
        description=f"{description} `*` or a comma-separated list of entity tags "
        '(`"3"`, `W/"3"`, RFC 9110); anything else is a 400.',
    )


# Typed without None and defaulted to it: the schema then says "optional, a string", where
# `str | None` would document a `null` no header can carry.
async def get_if_match(
    if_match: Annotated[
        Condition,
        _condition_header("Only change the todo if its ETag is one of these (else 412)."),
    ] = None,  # type: ignore[assignment]  # None = not sent
) -> list[int] | None:
    """The versions If-Match allows; None when there is no condition; 400 if malformed."""
    try:
        return if_match_versions(if_match)
    except MalformedConditionError as exc:
        raise BadRequest(MALFORMED_CONDITION.format("If-Match")) from exc


async def get_if_none_match(
    if_none_match: Annotated[
        Condition,
        _condition_header("304 without a body if the todo's ETag is one of these."),
    ] = None,  # type: ignore[assignment]  # None = not sent (see get_if_match)
) -> str | None:
    """The If-None-Match header, checked for syntax (400 if malformed)."""
    if if_none_match is not None:
        try:
            check_condition(if_none_match)
        except MalformedConditionError as exc:
            raise BadRequest(MALFORMED_CONDITION.format("If-None-Match")) from exc
    return if_none_match


# Versions a write is conditional on (from If-Match); None for an unconditional write.
IfMatch = Annotated[list[int] | None, Depends(get_if_match)]
# A well-formed If-None-Match header, or None.
IfNoneMatch = Annotated[str | None, Depends(get_if_none_match)]


async def get_feed(request: Request) -> ChangeFeed:
    feed: ChangeFeed = request.state.feed
    return feed


FeedDep = Annotated[ChangeFeed, Depends(get_feed)]


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """Who may read a change feed stream, on which session, and until when (their access
    token's expiry). Whether the session is still active is checked when the stream opens."""

    user_id: PydanticObjectId
    session_id: SessionKey
    until: datetime


async def get_token_access(
    token: BearerToken, tokens: TokenSettingsDep, clock: ClockDep
) -> StreamAccess:
    """The current user and session, and when their access token expires (decoded once)."""
    auth, until = await _authenticate(token, tokens, clock)
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
    redeemed = await crud.tickets.redeem_ticket(ticket=ticket)
    if redeemed is None:
        raise Unauthorized("Invalid, expired or already used ticket")
    return StreamAccess(
        user_id=redeemed.owner_id, session_id=redeemed.session_id, until=redeemed.stream_until
    )


TokenAccess = Annotated[StreamAccess, Depends(get_token_access)]
StreamAccessDep = Annotated[StreamAccess, Depends(get_stream_access)]
