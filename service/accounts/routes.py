"""The accounts API: tokens (log in, refresh, log out), your account, your sessions."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, status

from service.accounts import service, store
from service.accounts.deps import (
    CurrentSession,
    CurrentUser,
    PasswordHasherDep,
    SignupLimit,
    TokenSettingsDep,
    UserAgent,
    get_auth_cache,
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
)
from service.accounts.tokens import SESSION_ID_PATTERN
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

auth_router = APIRouter(tags=["auth"])
# A login past the session cap and a reused refresh token revoke sessions without a bearer
# token: these routes bind the worker's cache too, so that it hears of it at once.
HEARS_REVOCATIONS = [Depends(get_auth_cache)]


@auth_router.post(
    "/token",
    summary="Log in",
    responses=error_responses(Unauthorized, TooManyRequests),
    dependencies=HEARS_REVOCATIONS,
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
    return await service.log_in(
        email=username,
        password=password,
        passwords=passwords,
        tokens=tokens,
        settings=settings,
        ip=ip,
        user_agent=user_agent,
        now=clock(),
    )


@auth_router.post(
    "/token/refresh",
    summary="Refresh tokens",
    responses=error_responses(Unauthorized, TooManyRequests),
    dependencies=HEARS_REVOCATIONS,
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
    return await service.refresh(
        refresh_token=body.refresh_token, tokens=tokens, settings=settings, ip=ip, now=clock()
    )


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out",
    responses=error_responses(Unauthorized),
)
async def logout(current: CurrentSession, clock: ClockDep) -> None:
    """End this session: its access and refresh tokens stop working at once."""
    await store.revoke_session(
        user_id=id_of(current.user), session_id=current.session_id, now=clock()
    )


@auth_router.post(
    "/logout/all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out everywhere",
    responses=error_responses(Unauthorized),
)
async def logout_all(current: CurrentSession, clock: ClockDep) -> None:
    """End every session of your account, this one included."""
    await store.revoke_all_sessions(user_id=id_of(current.user), now=clock())


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
    body: UserCreate, passwords: PasswordHasherDep, clock: ClockDep, _limit: SignupLimit
) -> UserPublic:
    """Create an account, with its default list "Inbox"; the email is stored normalised (NFKC,
    lower-case), and if taken → 409.

    Signups are limited per client address (SIGNUP_MAX_PER_IP per SIGNUP_WINDOW_SECONDS).
    """
    user = await service.sign_up(new=body, passwords=passwords, now=clock())
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
    passwords: PasswordHasherDep,
    settings: SettingsDep,
    clock: ClockDep,
    ip: ClientIP,
) -> UserPublic:
    """Change your names and/or email; a new email needs `current_password` (400 if wrong).

    A taken email is a 409. Email changes are limited per account (EMAIL_CHANGE_MAX_PER_USER
    attempts per EMAIL_CHANGE_WINDOW_SECONDS, whatever their outcome; then 429).
    """
    updated = await service.update_account(
        user=user, update=body, passwords=passwords, settings=settings, ip=ip, now=clock()
    )
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
    passwords: PasswordHasherDep,
    settings: SettingsDep,
    clock: ClockDep,
    ip: ClientIP,
) -> None:
    """Set a new password (signup rules apply). Every session ends, this one included."""
    await service.change_password(
        user=user,
        current_password=body.current_password,
        new_password=body.new_password,
        passwords=passwords,
        settings=settings,
        ip=ip,
        now=clock(),
    )


@users_router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete your account",
    responses=PASSWORD_CHECKED,
)
async def delete_me(
    body: AccountDeletion,
    user: CurrentUser,
    passwords: PasswordHasherDep,
    settings: SettingsDep,
    clock: ClockDep,
    ip: ClientIP,
) -> None:
    """Delete your account with all its lists and their todos, its memberships of other
    people's lists, its invitations (sent and received) and its sessions; the email is free
    again after. The members of your lists see them removed."""
    await service.delete_account(
        user=user,
        password=body.password,
        passwords=passwords,
        settings=settings,
        ip=ip,
        now=clock(),
    )


sessions_router = APIRouter(tags=["sessions"], responses=error_responses(Unauthorized))


@sessions_router.get("/sessions", summary="List your sessions")
async def list_sessions(
    current: CurrentSession,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> list[SessionPublic]:
    """Your active sessions, newest first; `current` marks the one of the token you sent."""
    sessions = await store.list_active_sessions(
        user_id=id_of(current.user), now=clock(), limit=limit
    )
    return [
        SessionPublic.from_document(session, current=session.id == current.session_id)
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
    current: CurrentSession,
    clock: ClockDep,
) -> None:
    """Revoke one of your sessions (its tokens stop working at once); 404 if it isn't yours."""
    if not await store.revoke_session(
        user_id=id_of(current.user), session_id=session_id, now=clock()
    ):
        raise NotFound("Session not found")
