"""Dependencies, each as an Annotated alias: settings, password hasher, current user, todos."""

from typing import Annotated

from beanie import PydanticObjectId
from bson.errors import InvalidId
from fastapi import Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer

from service import crud
from service.config import Settings
from service.exceptions import NotFound, Unauthorized
from service.models import Todo, User, id_of
from service.security import InvalidTokenError, PasswordHasher, TokenSettings, decode_access_token

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


async def get_current_user(token: BearerToken, tokens: TokenSettingsDep) -> User:
    """The user named by the bearer token's subject; 401 for any unusable token."""
    if not token:
        raise Unauthorized("Not authenticated")
    try:
        claims = decode_access_token(token, tokens)
        user_id = PydanticObjectId(claims["sub"])
    except (InvalidTokenError, InvalidId) as exc:
        raise Unauthorized from exc
    user = await crud.users.get_user(user_id=user_id)
    if user is None:
        raise Unauthorized
    return user


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
