"""Signing up and reading one's own account."""

from fastapi import APIRouter, status

from service import crud
from service.api.deps import CurrentUser, PasswordHasherDep
from service.exceptions import Conflict, Unauthorized, error_responses
from service.schemas import UserCreate, UserPublic

router = APIRouter(tags=["users"])


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Sign up",
    responses=error_responses(Conflict),
)
async def create_user(body: UserCreate, passwords: PasswordHasherDep) -> UserPublic:
    """Create an account; the email is stored lower-cased and must not be taken."""
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
