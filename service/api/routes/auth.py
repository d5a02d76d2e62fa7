"""Logging in (the OAuth2 password flow), refreshing tokens and logging out."""

import logging
from datetime import timedelta
from typing import Annotated

from beanie import PydanticObjectId
from fastapi import APIRouter, Form, status

from service import crud
from service.api.deps import (
    ClientIP,
    ClockDep,
    CurrentAuth,
    PasswordHasherDep,
    SettingsDep,
    TokenSettingsDep,
    UserAgent,
)
from service.api.throttling import LoginThrottle, RefreshThrottle
from service.crud.sessions import RefreshOutcome
from service.exceptions import TooManyRequests, Unauthorized, error_responses
from service.models import id_of
from service.schemas import (
    EMAIL_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    RefreshRequest,
    Token,
    normalise_email,
)
from service.security import (
    TokenSettings,
    create_access_token,
    create_refresh_token,
    hash_refresh_token,
    new_session_id,
    refresh_token_session,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["auth"])

LOGIN_FAILED = "Incorrect email or password"
REFRESH_FAILED = "Invalid refresh token"


def _token_pair(
    *, user_id: PydanticObjectId, session_id: str, refresh: str, tokens: TokenSettings
) -> Token:
    return Token(
        access_token=create_access_token(str(user_id), tokens, session_id=session_id),
        expires_in=int(tokens.expires.total_seconds()),
        refresh_token=refresh,
    )


@router.post("/token", summary="Log in", responses=error_responses(Unauthorized, TooManyRequests))
async def login(
    username: Annotated[str, Form(max_length=EMAIL_MAX_LENGTH, description="Your email.")],
    password: Annotated[str, Form(max_length=PASSWORD_MAX_LENGTH)],
    passwords: PasswordHasherDep,
    tokens: TokenSettingsDep,
    settings: SettingsDep,
    clock: ClockDep,
    ip: ClientIP,
    user_agent: UserAgent,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> Token:
    """Exchange email and password (OAuth2 password form) for an access and a refresh token.

    Each login starts a session (past MAX_SESSIONS_PER_USER, the oldest ones end). After too
    many failures for one email or from one address, logins are refused with 429 (and
    `Retry-After`) until the window has passed; 503 (and `Retry-After`) while too many
    passwords already wait to be checked.
    """
    email = normalise_email(username.strip())  # as signup stored it
    now = clock()
    throttle = LoginThrottle(settings=settings, email=email, ip=ip, now=now)
    # A place in the hashing queue first: a burst beyond it is refused before any query.
    async with passwords.admitted():
        user = await crud.users.get_user_by_email(email=email)
        # An unknown email still costs one verification (see LoginThrottle.verify).
        valid, new_hash = await throttle.verify(
            passwords, password, user.hashed_password if user else None, login=True
        )
    if user is None or not valid:
        raise Unauthorized(LOGIN_FAILED)
    if new_hash is not None:
        # bcrypt (or outdated Argon2 parameters): store the current algorithm's hash.
        await crud.users.set_password_hash(user_id=id_of(user), hashed_password=new_hash)
    session_id = new_session_id()
    refresh = create_refresh_token(session_id)
    await crud.sessions.create_session(
        session_id=session_id,
        user_id=id_of(user),
        refresh_hash=hash_refresh_token(refresh),
        user_agent=user_agent,
        ip=ip,
        now=now,
        lifetime=timedelta(days=settings.refresh_token_expire_days),
    )
    await crud.sessions.revoke_oldest_sessions(
        user_id=id_of(user), keep=settings.max_sessions_per_user, now=now
    )
    return _token_pair(user_id=id_of(user), session_id=session_id, refresh=refresh, tokens=tokens)


@router.post(
    "/token/refresh",
    summary="Refresh tokens",
    responses=error_responses(Unauthorized, TooManyRequests),
)
async def refresh_tokens(
    body: RefreshRequest,
    tokens: TokenSettingsDep,
    settings: SettingsDep,
    clock: ClockDep,
    ip: ClientIP,
) -> Token:
    """Exchange a refresh token for a new access token and a new refresh token.

    The refresh token sent stops working. Sending one that was already exchanged revokes the
    whole session (someone else may hold it), except for the one just exchanged, sent again
    within the reuse grace window: that gets 401 and changes nothing. After too many failed
    refreshes from one address, refreshes are refused with 429 (and `Retry-After`) until the
    window has passed.
    """
    now = clock()
    throttle = RefreshThrottle(settings=settings, ip=ip, now=now)
    attempt = await throttle.attempt()
    session_id = refresh_token_session(body.refresh_token)
    if session_id is None:
        raise Unauthorized(REFRESH_FAILED)
    new_refresh = create_refresh_token(session_id)
    result = await crud.sessions.rotate_refresh_token(
        session_id=session_id,
        presented_hash=hash_refresh_token(body.refresh_token),
        new_hash=hash_refresh_token(new_refresh),
        now=now,
        grace=timedelta(seconds=settings.refresh_reuse_grace_seconds),
    )
    if result.outcome in {RefreshOutcome.ROTATED, RefreshOutcome.RACED}:
        # Not a failure: the session's own client, or two of its tabs at once.
        await throttle.succeeded(attempt)
    if result.outcome is RefreshOutcome.REUSED:
        logger.warning("refresh token reused: session %s revoked", session_id)
    if result.outcome is not RefreshOutcome.ROTATED or result.session is None:
        raise Unauthorized(REFRESH_FAILED)
    return _token_pair(
        user_id=result.session.user_id, session_id=session_id, refresh=new_refresh, tokens=tokens
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out",
    responses=error_responses(Unauthorized),
)
async def logout(auth: CurrentAuth, clock: ClockDep) -> None:
    """End this session: its access and refresh tokens stop working at once."""
    await crud.sessions.revoke_session(
        user_id=id_of(auth.user), session_id=auth.session_id, now=clock()
    )


@router.post(
    "/logout/all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out everywhere",
    responses=error_responses(Unauthorized),
)
async def logout_all(auth: CurrentAuth, clock: ClockDep) -> None:
    """End every session of your account, this one included."""
    await crud.sessions.revoke_all_sessions(user_id=id_of(auth.user), now=clock())
