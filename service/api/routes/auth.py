"""Logging in: the OAuth2 password flow."""

from typing import Annotated

from fastapi import APIRouter, Form

from service import crud
from service.api.deps import PasswordHasherDep, TokenSettingsDep
from service.exceptions import Unauthorized, error_responses
from service.models import id_of
from service.schemas import EMAIL_MAX_LENGTH, PASSWORD_MAX_LENGTH, Token
from service.security import DUMMY_HASH, create_access_token

router = APIRouter(tags=["auth"])

LOGIN_FAILED = "Incorrect email or password"


@router.post("/token", summary="Log in", responses=error_responses(Unauthorized))
async def login(
    username: Annotated[str, Form(max_length=EMAIL_MAX_LENGTH, description="Your email.")],
    password: Annotated[str, Form(max_length=PASSWORD_MAX_LENGTH)],
    passwords: PasswordHasherDep,
    tokens: TokenSettingsDep,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> Token:
    """Exchange email and password (OAuth2 password form) for a bearer access token."""
    user = await crud.users.get_user_by_email(email=username.strip().lower())
    # An unknown email still costs one verification, so timing doesn't reveal which
    # emails have accounts.
    valid, new_hash = await passwords.verify(password, user.hashed_password if user else DUMMY_HASH)
    if user is None or not valid:
        raise Unauthorized(LOGIN_FAILED)
    if new_hash is not None:
        # bcrypt (or outdated Argon2 parameters): store the current algorithm's hash.
        await crud.users.set_password_hash(user_id=id_of(user), hashed_password=new_hash)
    return Token(
        access_token=create_access_token(str(id_of(user)), tokens),
        expires_in=int(tokens.expires.total_seconds()),
    )
