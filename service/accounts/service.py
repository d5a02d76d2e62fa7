"""The accounts use cases that are more than one query: logging in, refreshing, signing up,
changing or deleting an account, and checking a password a route asks for again."""

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from beanie import PydanticObjectId
from pydantic import MISSING
from pymongo.asynchronous.client_session import AsyncClientSession

from service.accounts import store
from service.accounts.models import User
from service.accounts.passwords import PasswordHasher
from service.accounts.schemas import Token, UserCreate, UserUpdate, normalise_email
from service.accounts.store import RefreshOutcome
from service.accounts.throttling import LoginThrottle, RefreshThrottle, count_email_change
from service.accounts.tokens import (
    TokenSettings,
    create_access_token,
    create_refresh_token,
    hash_refresh_token,
    new_session_id,
    refresh_token_session,
)
from service.config import Settings
from service.core.store import id_of
from service.errors import BadRequest, Conflict, Unauthorized
from service.events import service as events
from service.invitations import service as invitations
from service.lists import service as lists
from service.todos import service as todos

logger = logging.getLogger(__name__)

LOGIN_FAILED = "Incorrect email or password"
REFRESH_FAILED = "Invalid refresh token"
INCORRECT_PASSWORD = "Incorrect password"  # noqa: S105 -- an error message


def _token_pair(
    *, user_id: PydanticObjectId, session_id: str, refresh: str, tokens: TokenSettings
) -> Token:
    return Token(
        access_token=create_access_token(str(user_id), tokens, session_id=session_id),
        expires_in=int(tokens.expires.total_seconds()),
        refresh_token=refresh,
    )


async def log_in(
    *,
    email: str,
    password: str,
    passwords: PasswordHasher,
    tokens: TokenSettings,
    settings: Settings,
    ip: str,
    user_agent: str,
    now: datetime,
) -> Token:
    """A new session and its tokens for the right password of `email` (as typed); 401 for a
    wrong one or an unknown email, 429 or 503 from the throttle and the hashing queue."""
    email = normalise_email(email.strip())  # as signup stored it
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
    user_id = id_of(user)
    if new_hash is not None:
        # bcrypt (or outdated Argon2 parameters): store the current algorithm's hash.
        await store.set_password_hash(user_id=user_id, hashed_password=new_hash)
    session_id = new_session_id()
    refresh = create_refresh_token(session_id)
    await store.create_session(
        session_id=session_id,
        user_id=user_id,
        refresh_hash=hash_refresh_token(refresh),
        user_agent=user_agent,
        ip=ip,
        now=now,
        lifetime=timedelta(days=settings.refresh_token_expire_days),
    )
    await store.revoke_oldest_sessions(
        user_id=user_id, keep=settings.max_sessions_per_user, now=now
    )
    return _token_pair(user_id=user_id, session_id=session_id, refresh=refresh, tokens=tokens)


async def refresh(
    *, refresh_token: str, tokens: TokenSettings, settings: Settings, ip: str, now: datetime
) -> Token:
    """New tokens for the session's current refresh token; 401 for any other (a reused one
    revokes its session), 429 past the client address's failures."""
    throttle = RefreshThrottle(settings=settings, ip=ip, now=now)
    attempt = await throttle.attempt()
    session_id = refresh_token_session(refresh_token)
    if session_id is None:
        raise Unauthorized(REFRESH_FAILED)
    new_refresh = create_refresh_token(session_id)
    result = await store.rotate_refresh_token(
        session_id=session_id,
        presented_hash=hash_refresh_token(refresh_token),
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


async def check_current_password(
    *,
    user: User,
    password: str,
    passwords: PasswordHasher,
    settings: Settings,
    ip: str,
    now: datetime,
) -> None:
    """400 unless `password` is the user's, where a route asks for it again. Attempts count
    like logins of the email (a right password gives its count back), so that a stolen
    access token can't be used to guess the password either."""
    throttle = LoginThrottle(settings=settings, email=user.email, ip=ip, now=now)
    valid, _ = await throttle.verify(passwords, password, user.hashed_password, login=False)
    if not valid:
        raise BadRequest(INCORRECT_PASSWORD)


async def sign_up(*, new: UserCreate, passwords: PasswordHasher, now: datetime) -> User:
    """Store a new user with the password hashed, and their default list; Conflict if the
    email is taken.

    The default list (whose id is the user's) is made first, with the id the user is then
    stored with: a crash between the two leaves a list nobody can see, never a user without
    a default list. If the email is taken, the list goes again.
    """
    hashed_password = await passwords.hash(new.password)
    user_id = PydanticObjectId()
    await lists.create_default_list(user_id=user_id, now=now)
    try:
        return await store.create_user(
            user_id=user_id,
            email=new.email,
            fname=new.fname,
            lname=new.lname,
            hashed_password=hashed_password,
            now=now,
        )
    except Conflict:
        await lists.discard_default_list(user_id=user_id)
        raise


async def update_account(
    *,
    user: User,
    update: UserUpdate,
    passwords: PasswordHasher,
    settings: Settings,
    ip: str,
    now: datetime,
) -> User:
    """Apply `update` to the user as it is stored now; a new email costs an email change
    attempt, counted first, then needs the current password. Unauthorized if the user was
    deleted since the request authenticated."""
    changes = update.model_dump(exclude={"current_password"})  # what was sent
    if "email" in changes:
        assert update.current_password is not MISSING  # noqa: S101 -- UserUpdate requires it
        await count_email_change(settings=settings, user_id=id_of(user), now=now)
        await check_current_password(
            user=user,
            password=update.current_password,
            passwords=passwords,
            settings=settings,
            ip=ip,
            now=now,
        )
    if not changes:
        return user
    updated = await store.update_user(user_id=id_of(user), changes=changes)
    if updated is None:
        raise Unauthorized
    return updated


async def change_password(
    *,
    user: User,
    current_password: str,
    new_password: str,
    passwords: PasswordHasher,
    settings: Settings,
    ip: str,
    now: datetime,
) -> None:
    """Store a hash of `new_password` if `current_password` is right, then end every session
    of the user."""
    await check_current_password(
        user=user,
        password=current_password,
        passwords=passwords,
        settings=settings,
        ip=ip,
        now=now,
    )
    user_id = id_of(user)
    await store.set_password_hash(
        user_id=user_id, hashed_password=await passwords.hash(new_password)
    )
    await store.revoke_all_sessions(user_id=user_id, now=now)


async def delete_account(
    *,
    user: User,
    password: str,
    passwords: PasswordHasher,
    settings: Settings,
    ip: str,
    now: datetime,
) -> None:
    """Delete the user and everything of theirs if `password` is right."""
    await check_current_password(
        user=user, password=password, passwords=passwords, settings=settings, ip=ip, now=now
    )
    await delete_everything_of(user_id=id_of(user), email=user.email, now=now)


async def delete_everything_of(*, user_id: PydanticObjectId, email: str, now: datetime) -> None:
    """Delete the user with everything of theirs, in an order that can stop anywhere: the
    next attempt (the user can still log in until the very last step) finishes it.

    1. Their sessions: their tokens stop working at once, so they make nothing new meanwhile.
    2. The lists they own, as tombstones with their members' memberships ended, then those
       lists' todos (as tombstones) and invitations: members see the lists removed in lists
       sync and the feed. Lists first: no todo can be added to a deleted list.
    3. Their memberships of other lists (each list's member count and version with it) and
       the invitations they sent or got, in one transaction where the server has them.
    4. Their own records, in one transaction where the server has them: event tickets,
       idempotency records (each holds a copy of the todo it created), the user last.

    Step 2 may be large (every todo of up to MAX_LISTS_PER_USER lists), so it is not a
    transaction: each of its writes is one the lists' members may see anyway, and each is safe
    to repeat (delete_lists_of answers the lists deleted before too, whose todos it then
    tombstones again if any are left).
    """
    await store.delete_sessions_of(user_id=user_id, session=None)
    for list_id in await lists.delete_lists_of(user_id=user_id, now=now):
        await todos.delete_todos_in_list(list_id=list_id)
        await invitations.delete_invitations_of_list(list_id=list_id)

    async def elsewhere(session: AsyncClientSession | None) -> None:
        await lists.leave_all_lists(user_id=user_id, now=now, session=session)
        await invitations.delete_invitations_of(user_id=user_id, email=email, session=session)

    await store.in_transaction(elsewhere)

    async def own_records(session: AsyncClientSession | None) -> None:
        await events.delete_tickets_of(owner_id=user_id, session=session)
        await todos.delete_idempotency_keys_of(user_id=user_id, session=session)
        await store.delete_user(user_id=user_id, session=session)

    await store.in_transaction(own_records)


def all_users() -> AsyncIterator[User]:
    """Every user, oldest first (the admin CLI lists them)."""
    return store.iter_users()


async def find_user_by_email(*, email: str) -> User | None:
    """The user with this email as an administrator types it (any case, spaces around), if
    any: the admin CLI's commands about one user."""
    return await store.get_user_by_email(email=normalise_email(email.strip()))


async def delete_user_by_email(*, email: str, now: datetime) -> bool:
    """Delete the user with this email (as typed) and everything of theirs, without a
    password: an administrator's deletion (the admin CLI). False if there is no such user."""
    user = await find_user_by_email(email=email)
    if user is None:
        return False
    await delete_everything_of(user_id=id_of(user), email=user.email, now=now)
    return True
