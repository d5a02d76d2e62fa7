"""Signing up, and reading, editing and deleting one's own account."""

from fastapi import APIRouter, status

from service import crud
from service.api.deps import CurrentUser, PasswordHasherDep
from service.api.throttling import EmailChangeLimitDep, PasswordCheckDep, SignupLimit
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
