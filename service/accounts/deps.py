"""Who is calling: the bearer token's user and session, the hasher, the user agent; the
signup limit."""

from datetime import UTC, datetime
from typing import Annotated

from beanie import PydanticObjectId
from bson.errors import InvalidId
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from service.accounts import store, throttling
from service.accounts.cache import AuthCache
from service.accounts.models import USER_AGENT_MAX_LENGTH, User
from service.accounts.passwords import PasswordHasher
from service.accounts.store import Authenticated, Join
from service.accounts.tokens import (
    ExpiredTokenError,
    InvalidTokenError,
    TokenSettings,
    decode_access_token,
    is_session_id,
)
from service.core.clock import Clock
from service.core.context import bind_access_listener, bind_user
from service.core.deps import ClientIP, ClockDep, SettingsDep
from service.errors import Unauthorized

# auto_error=False: a missing token goes through Unauthorized, like every other 401.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


async def get_token_settings(request: Request) -> TokenSettings:
    tokens: TokenSettings = request.state.tokens
    return tokens


async def get_password_hasher(request: Request) -> PasswordHasher:
    passwords: PasswordHasher = request.state.passwords
    return passwords


async def get_auth_cache(request: Request) -> AuthCache:
    """The worker's authentication cache; what the request revokes reaches it at once."""
    cache: AuthCache = request.state.auth_cache
    if cache.enabled:
        bind_access_listener(cache.invalidate)
    return cache


TokenSettingsDep = Annotated[TokenSettings, Depends(get_token_settings)]
AuthCacheDep = Annotated[AuthCache, Depends(get_auth_cache)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


async def get_user_agent(request: Request) -> str:
    """The User-Agent header, cut to what a session stores."""
    return request.headers.get("user-agent", "")[:USER_AGENT_MAX_LENGTH]


UserAgent = Annotated[str, Depends(get_user_agent)]


TOKEN_EXPIRED = "Token expired"  # noqa: S105 -- an error message
# RFC 6750: tells the client this token is done for (here: refresh it), not that it sent none.
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


async def authenticate_token(
    token: str | None,
    tokens: TokenSettings,
    clock: Clock,
    *,
    join: Join | None = None,
    cache: AuthCache | None = None,
) -> tuple[Authenticated, datetime]:
    """The user and session of a valid access token, and when the token expires.

    401 for any unusable token: "Token expired" (with `error="invalid_token"`) for one that is
    valid but for its expiry, so that clients know to refresh; the generic text otherwise.
    One aggregate on sessions (by _id) with a $lookup of the user (by _id), and of `join` if
    given: a logged-out, expired or deleted session, or a deleted user, is refused on the very
    next request.
    A `sid` that isn't a session id's shape (an ObjectId of a session from before session ids
    were random, say) is refused without a query.
    With `cache`, the worker's cache answers instead while it may (accounts/cache.py), and
    what the database answered is kept there.
    """
    if not token:
        raise Unauthorized("Not authenticated")
    checked = None if cache is None else cache.checked(token)
    if checked is None:
        checked = _checked(token, tokens)
        if cache is not None:
            cache.keep_checked(token, checked)
    user_id, session_id, expires = checked
    now = clock()
    found = None if cache is None else cache.get(session_id, user_id, join, now)
    if found is None:
        # Taken before the read: a revocation heard meanwhile keeps the answer out.
        generation = 0 if cache is None else cache.generation
        found = await store.authenticate(session_id=session_id, user_id=user_id, now=now, join=join)
        if found is None:
            raise Unauthorized
        if cache is not None:
            cache.put(generation, found, join)
    bind_user(str(user_id))
    return found, datetime.fromtimestamp(expires, UTC)


def _checked(token: str, tokens: TokenSettings) -> tuple[PydanticObjectId, str, float]:
    """The user, session id and expiry of a valid access token; 401 otherwise (see
    authenticate_token)."""
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
    return user_id, session_id, float(claims["exp"])


async def get_current_session(
    token: BearerToken, tokens: TokenSettingsDep, clock: ClockDep, cache: AuthCacheDep
) -> Authenticated:
    """The user and session of a valid access token; 401 for any unusable token."""
    found, _ = await authenticate_token(token, tokens, clock, cache=cache)
    return found


# The caller's user and the id of the session (login) their access token belongs to.
CurrentSession = Annotated[Authenticated, Depends(get_current_session)]


async def get_current_user(current: CurrentSession) -> User:
    """The user the bearer token belongs to (see get_current_session)."""
    return current.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def limit_signups(settings: SettingsDep, ip: ClientIP, clock: ClockDep) -> None:
    """Count a signup attempt for the client IP; 429 past the limit.

    A dependency, so that it runs before the body is validated: an invalid signup counts too.
    """
    await throttling.count_signup(settings=settings, ip=ip, now=clock())


SignupLimit = Annotated[None, Depends(limit_signups)]
