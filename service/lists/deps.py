"""The caller with their roles, and the list a path names with the caller's right to it."""

from dataclasses import dataclass
from typing import Annotated

from beanie import PydanticObjectId
from fastapi import Depends, Path

from service.accounts.deps import AuthCacheDep, BearerToken, TokenSettingsDep, authenticate_token
from service.accounts.store import Join
from service.core.deps import ClockDep
from service.lists.access import ADMIN, READ, WRITE, Caller
from service.lists.models import Membership, Role, TodoList

OBJECT_ID_PATTERN = r"^[0-9a-fA-F]{24}$"

# The caller's memberships are read with their session: one round trip for both (none when
# the worker's cache has them). Each is about its list: a write that ends a list's
# memberships names the list (store.end_memberships_of_list).
MEMBERSHIPS = Join(
    collection=Membership.Settings.name,
    foreign_field="user_id",
    refers=(("list_id", TodoList.Settings.name),),
)


async def get_caller(
    token: BearerToken, tokens: TokenSettingsDep, clock: ClockDep, cache: AuthCacheDep
) -> Caller:
    """The user of a valid access token with their role in every list they can read; 401 for
    any unusable token (accounts/deps.authenticate_token)."""
    found, _ = await authenticate_token(token, tokens, clock, join=MEMBERSHIPS, cache=cache)
    return Caller.of(found.user, found.session_id, found.joined)


# Routes that need to know which lists the caller can read use this instead of CurrentUser
# (both would authenticate twice).
CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_list_id(
    list_id: Annotated[str, Path(pattern=OBJECT_ID_PATTERN, description="The list's id.")],
) -> PydanticObjectId:
    return PydanticObjectId(list_id)


ListId = Annotated[PydanticObjectId, Depends(get_list_id)]


@dataclass(frozen=True, slots=True)
class ListAccess:
    """A list the caller may act on as the route needs, with their role in it."""

    list_id: PydanticObjectId
    role: Role
    caller: Caller


async def get_readable_list(list_id: ListId, caller: CurrentCaller) -> ListAccess:
    """A list the caller is a member of; 404 otherwise, as for a list that doesn't exist."""
    return ListAccess(list_id, caller.require(list_id, READ), caller)


async def get_writable_list(list_id: ListId, caller: CurrentCaller) -> ListAccess:
    """A list whose todos the caller may change (editor or owner); 403 for a viewer."""
    return ListAccess(list_id, caller.require(list_id, WRITE), caller)


async def get_owned_list(list_id: ListId, caller: CurrentCaller) -> ListAccess:
    """A list the caller owns; 403 for its other members."""
    return ListAccess(list_id, caller.require(list_id, ADMIN), caller)


ReadableList = Annotated[ListAccess, Depends(get_readable_list)]
WritableList = Annotated[ListAccess, Depends(get_writable_list)]
OwnedList = Annotated[ListAccess, Depends(get_owned_list)]
