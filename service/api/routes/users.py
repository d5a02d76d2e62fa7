"""Signing up, and reading, editing and deleting one's own account."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from beanie import PydanticObjectId
from fastapi import APIRouter, Depends, status

from service import crud
from service.api.deps import ClockDep, CurrentUser, PasswordHasherDep, SettingsDep
from service.api.throttling import PasswordCheckDep, SignupLimit
from service.config import Settings
from service.exceptions import (
    BadRequest,
    Conflict,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from service.models import id_of
from service.schemas import AccountDeletion, PasswordChange, UserCreate, UserPublic, UserUpdate

router = APIRouter(tags=["users"])

# Errors of the routes that ask for the current password.
PASSWORD_CHECKED = error_responses(Unauthorized, BadRequest, TooManyRequests)

# Throttle kind (crud.throttle) of email changes, counted per user id.
EMAIL_CHANGE_USER = "email-change-user"


@dataclass(frozen=True, slots=True)
class EmailChangeLimit:
    """Email change attempts per user within EMAIL_CHANGE_WINDOW_SECONDS.

    A change to a taken address answers 409 (it can't pretend to succeed), which tells the
    caller that the address has an account: counting every attempt, before anything else is
    checked, bounds how many addresses one account can test.
    """

    settings: Settings
    now: datetime

    async def __call__(self, user_id: PydanticObjectId) -> None:
        """Count this attempt (atomically, so parallel ones can't slip past); 429 past the max."""
        count = await crud.throttle.hit(
            kind=EMAIL_CHANGE_USER,
            subject=str(user_id),
            now=self.now,
            window=timedelta(seconds=self.settings.email_change_window_seconds),
        )
        if count.hits > self.settings.email_change_max_per_user:
            raise TooManyRequests(
                "Too many email changes; try again later", retry_after=count.retry_after(self.now)
            )


async def get_email_change_limit(settings: SettingsDep, clock: ClockDep) -> EmailChangeLimit:
    return EmailChangeLimit(settings=settings, now=clock())


EmailChangeLimitDep = Annotated[EmailChangeLimit, Depends(get_email_change_limit)]


@router.post(
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
    user = await crud.users.create_user(
        email=body.email,
        fname=body.fname,
        lname=body.lname,
        hashed_password=await passwords.hash(body.password),
    )
    return UserPublic.from_document(user)


@router.get("/me", summary="Current user", responses=error_responses(Unauthorized))
async def read_me(user: CurrentUser) -> UserPublic:
    """The account the bearer token belongs to."""
    return UserPublic.from_document(user)


@router.patch(
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
    updated = await crud.users.update_user(user_id=id_of(user), changes=changes)
    if updated is None:  # deleted since this request authenticated
        raise Unauthorized
    return UserPublic.from_document(updated)


@router.put(
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
    await crud.users.change_password(
        user_id=id_of(user),
        hashed_password=await passwords.hash(body.new_password),
        now=check_password.now,
    )


@router.delete(
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
    await crud.users.delete_user(user_id=id_of(user))
