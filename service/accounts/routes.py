"""The accounts API: tokens (log in, refresh, log out), your account, your sessions."""

import logging
from datetime import timedelta
from typing import Annotated

from beanie import PydanticObjectId
from fastapi import APIRouter, Form, Path, Query, status

from service.accounts import store
from service.accounts.deps import (
    CurrentAuth,
    CurrentUser,
    PasswordHasherDep,
    TokenSettingsDep,
    UserAgent,
)
from service.accounts.schemas import (
    EMAIL_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    AccountDeletion,
    PasswordChange,
    RefreshRequest,
    SessionPublic,
    Token,
    UserCreate,
    UserPublic,
    UserUpdate,
    normalise_email,
)
from service.accounts.store import RefreshOutcome
from service.accounts.throttling import (
    EmailChangeLimitDep,
    LoginThrottle,
    PasswordCheckDep,
    RefreshThrottle,
    SignupLimit,
)
from service.accounts.tokens import (
    SESSION_ID_PATTERN,
    TokenSettings,
    create_access_token,
    create_refresh_token,
    hash_refresh_token,
    new_session_id,
    refresh_token_session,
)
from service.core.deps import ClientIP, ClockDep, SettingsDep
from service.core.store import id_of
from service.errors import (
    BadRequest,
    Conflict,
    NotFound,
    TooManyRequests,
    Unauthorized,
    error_responses,
)

logger = logging.getLogger(__name__)

auth_router = APIRouter(tags=["auth"])

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


@auth_router.post(
    "/token", summary="Log in", responses=error_responses(Unauthorized, TooManyRequests)
)
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
        user = await store.get_user_by_email(email=email)
        # An unknown email still costs one verification (see LoginThrottle.verify).
        valid, new_hash = await throttle.verify(
            passwords, password, user.hashed_password if user else None, login=True
        )
    if user is None or not valid:
        raise Unauthorized(LOGIN_FAILED)
    if new_hash is not None:
        # bcrypt (or outdated Argon2 parameters): store the current algorithm's hash.
        await store.set_password_hash(user_id=id_of(user), hashed_password=new_hash)
    session_id = new_session_id()
    refresh = create_refresh_token(session_id)
    await store.create_session(
        session_id=session_id,
        user_id=id_of(user),
        refresh_hash=hash_refresh_token(refresh),
        user_agent=user_agent,
        ip=ip,
        now=now,
        lifetime=timedelta(days=settings.refresh_token_expire_days),
    )
    await store.revoke_oldest_sessions(
        user_id=id_of(user), keep=settings.max_sessions_per_user, now=now
    )
    return _token_pair(user_id=id_of(user), session_id=session_id, refresh=refresh, tokens=tokens)


@auth_router.post(
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
    result = await store.rotate_refresh_token(
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


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out",
    responses=error_responses(Unauthorized),
)
async def logout(auth: CurrentAuth, clock: ClockDep) -> None:
    """End this session: its access and refresh tokens stop working at once."""
    await store.revoke_session(user_id=id_of(auth.user), session_id=auth.session_id, now=clock())


@auth_router.post(
    "/logout/all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out everywhere",
    responses=error_responses(Unauthorized),
)
async def logout_all(auth: CurrentAuth, clock: ClockDep) -> None:
    """End every session of your account, this one included."""
    await store.revoke_all_sessions(user_id=id_of(auth.user), now=clock())


users_router = APIRouter(tags=["users"])

# Errors of the routes that ask for the current password.
PASSWORD_CHECKED = error_responses(Unauthorized, BadRequest, TooManyRequests)


@users_router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Sign up",
    responses=error_responses(Conflict, TooManyRequests),
)
async def create_user(
    body: UserCreate, passwords: PasswordHasherDep, _limit: SignupLimit
) -> UserPublic:
    """Create an account; the email is stored normalised (NFKC, lower-case), and if taken → 409.

    Signups are limited per client address (SIGNUP_MAX_PER_IP per SIGNUP_WINDOW_SECONDS).
    """
    user = await store.create_user(
        email=body.email,
        fname=body.fname,
        lname=body.lname,
        hashed_password=await passwords.hash(body.password),
    )
    return UserPublic.from_document(user)


@users_router.get("/me", summary="Current user", responses=error_responses(Unauthorized))
async def read_me(user: CurrentUser) -> UserPublic:
    """The account the bearer token belongs to."""
    return UserPublic.from_document(user)


@users_router.patch(
    "/me",
    summary="Edit your account",
    responses=error_responses(Unauthorized, BadRequest, Conflict, TooManyRequests),
)
async def update_me(
    body: UserUpdate,
    user: CurrentUser,
    limit_email_changes: EmailChangeLimitDep,
    check_password: PasswordCheckDep,
) -> UserPublic:
    """Change your names and/or email; a new email needs `current_password` (400 if wrong).

    A taken email is a 409. Email changes are limited per account (EMAIL_CHANGE_MAX_PER_USER
    attempts per EMAIL_CHANGE_WINDOW_SECONDS, whatever their outcome; then 429).
    """
    changes = body.model_dump(exclude_unset=True, exclude={"current_password"})
    if "email" in changes:
        assert body.current_password is not None  # noqa: S101 -- UserUpdate requires it
        await limit_email_changes(id_of(user))
        await check_password(user, body.current_password)
    if not changes:
        return UserPublic.from_document(user)
    updated = await store.update_user(user_id=id_of(user), changes=changes)
    if updated is None:  # deleted since this request authenticated
        raise Unauthorized
    return UserPublic.from_document(updated)


@users_router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change your password",
    responses=PASSWORD_CHECKED,
)
async def change_password(
    body: PasswordChange,
    user: CurrentUser,
    check_password: PasswordCheckDep,
    passwords: PasswordHasherDep,
) -> None:
    """Set a new password (signup rules apply). Every session ends, this one included."""
    await check_password(user, body.current_password)
    await store.change_password(
        user_id=id_of(user),
        hashed_password=await passwords.hash(body.new_password),
        now=check_password.now,
    )


@users_router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete your account",
    responses=PASSWORD_CHECKED,
)
async def delete_me(
    body: AccountDeletion, user: CurrentUser, check_password: PasswordCheckDep
) -> None:
    """Delete your account with all its todos and sessions; the email is free again after."""
    await check_password(user, body.password)
    await store.delete_user(user_id=id_of(user))


sessions_router = APIRouter(tags=["sessions"], responses=error_responses(Unauthorized))


@sessions_router.get("/sessions", summary="List your sessions")
async def list_sessions(
    auth: CurrentAuth, clock: ClockDep, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> list[SessionPublic]:
    """Your active sessions, newest first; `current` marks the one of the token you sent."""
    sessions = await store.list_active_sessions(user_id=id_of(auth.user), now=clock(), limit=limit)
    return [
        SessionPublic.from_document(session, current=session.id == auth.session_id)
        for session in sessions
    ]


@sessions_router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End a session",
    responses=error_responses(NotFound),
)
async def revoke_session(
    session_id: Annotated[
        str,
        Path(pattern=SESSION_ID_PATTERN, description="The session's id (from GET /api/sessions)."),
    ],
    auth: CurrentAuth,
    clock: ClockDep,
) -> None:
    """Revoke one of your sessions (its tokens stop working at once); 404 if it isn't yours."""
    if not await store.revoke_session(user_id=id_of(auth.user), session_id=session_id, now=clock()):
        raise NotFound("Session not found")
