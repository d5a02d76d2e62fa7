"""Lists and their members: list and sync, create, read, rename, delete; members, roles,
leaving, transferring ownership."""

from typing import Annotated

from beanie import PydanticObjectId
from fastapi import APIRouter, Depends, Path, Request, Response, status

from service.core.deps import SettingsDep
from service.core.query import query_parameters, query_reader
from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    error_responses,
)
from service.invitations import service as invitations
from service.lists import listing, service
from service.lists.deps import OBJECT_ID_PATTERN, CurrentCaller, OwnedList, ReadableList
from service.lists.schemas import (
    ListChanges,
    ListCreate,
    ListPage,
    ListPublic,
    ListQuery,
    ListTransfer,
    ListUpdate,
    MemberPublic,
    MemberUpdate,
)
from service.todos.deps import IfMatch, IfNoneMatch
from service.todos.etags import etag, none_match

router = APIRouter(tags=["lists"], responses=error_responses(Unauthorized))


async def get_member_id(
    user_id: Annotated[str, Path(pattern=OBJECT_ID_PATTERN, description="The member's user id.")],
) -> PydanticObjectId:
    return PydanticObjectId(user_id)


MemberId = Annotated[PydanticObjectId, Depends(get_member_id)]


@router.get(
    "/lists",
    summary="List your lists, a page at a time, or what changed since an instant",
    responses=error_responses(BadRequest, Gone),
    openapi_extra=query_parameters(ListQuery),
)
async def list_lists(
    caller: CurrentCaller,
    settings: SettingsDep,
    query: Annotated[ListQuery, Depends(query_reader(ListQuery))],
) -> ListPage | ListChanges:
    """Every list you can read, owned or shared: your default list first, then the others
    by creation, oldest first, a page at a time.

    With `updated_since` (lists sync) it lists changes instead: the lists whose `List`
    changed for you (created, renamed, members or roles changed), and `{"id", "removed": true}`
    for those you can no longer read (deleted, left, removed); drop their todos.
    """
    return await listing.list_lists(caller=caller, query=query, settings=settings)


@router.post(
    "/lists",
    status_code=status.HTTP_201_CREATED,
    summary="Create a list",
    responses=error_responses(Conflict),
)
async def create_list(
    body: ListCreate,
    caller: CurrentCaller,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> ListPublic:
    """A new list of yours; `Location` names it, `ETag` its version.

    409 once you own MAX_LISTS_PER_USER lists (your default list counts)."""
    created = await service.create_list(
        caller=caller, name=body.name, max_lists=settings.max_lists_per_user
    )
    # A path, not a URL: it doesn't depend on a Host header a proxy may have rewritten.
    response.headers["Location"] = str(request.app.url_path_for("read_list", list_id=created.id))
    return _with_etag(created, response)


@router.get(
    "/lists/{list_id}",
    summary="Read a list",
    response_model=ListPublic,
    responses={
        status.HTTP_304_NOT_MODIFIED: {"description": "If-None-Match matched the list's ETag."},
        **error_responses(BadRequest, NotFound),
    },
)
async def read_list(
    access: ReadableList, response: Response, if_none_match: IfNoneMatch
) -> Response | ListPublic:
    """A list you are a member of, with its `ETag`; 304 if `If-None-Match` names it."""
    found = await service.read_list(caller=access.caller, list_id=access.list_id, role=access.role)
    if none_match(if_none_match, found.version):
        return Response(
            status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(found.version)}
        )
    return _with_etag(found, response)


@router.patch(
    "/lists/{list_id}",
    summary="Rename a list",
    responses=error_responses(BadRequest, Forbidden, NotFound, Conflict, PreconditionFailed),
)
async def rename_list(
    access: OwnedList, body: ListUpdate, versions: IfMatch, response: Response
) -> ListPublic:
    """Rename a list you own (its members: 403); with `If-Match`, only if the list is still
    at that ETag (else 412, nothing changes). 409 if it changed hands and came back while the
    request ran (retry)."""
    renamed = await service.rename_list(
        caller=access.caller, list_id=access.list_id, name=body.name, versions=versions
    )
    return _with_etag(renamed, response)


@router.delete(
    "/lists/{list_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a list",
    responses=error_responses(BadRequest, Forbidden, NotFound, Conflict, PreconditionFailed),
)
async def delete_list(access: OwnedList, versions: IfMatch) -> None:
    """Delete a list you own with its todos (as tombstones, for sync and the feed); every
    member sees it as removed in lists sync. Your default list can't be deleted (409).
    With `If-Match`, only if the list is still at that ETag (else 412)."""
    await service.delete_list(caller=access.caller, list_id=access.list_id, versions=versions)
    # Its pending invitations can't be accepted any more (404): they go too.
    await invitations.delete_invitations_of_list(list_id=access.list_id)


@router.get(
    "/lists/{list_id}/members",
    summary="List a list's members",
    responses=error_responses(NotFound),
)
async def list_members(access: ReadableList) -> list[MemberPublic]:
    """The members of a list you are a member of, the owner first, then by when they joined
    (at most MAX_LIST_MEMBERS)."""
    return await service.list_members(list_id=access.list_id)


@router.patch(
    "/lists/{list_id}/members/{user_id}",
    summary="Change a member's role",
    responses=error_responses(Forbidden, NotFound, Conflict),
)
async def change_role(access: OwnedList, user_id: MemberId, body: MemberUpdate) -> MemberPublic:
    """Make a member of a list you own an editor or a viewer (its members: 403). Your own
    entry is the owner's: 409 (transfer the list instead); a user who isn't a member: 404."""
    return await service.change_role(
        caller=access.caller, list_id=access.list_id, user_id=user_id, role=body.role
    )


@router.delete(
    "/lists/{list_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member, or leave a list",
    responses=error_responses(Forbidden, NotFound, Conflict),
)
async def remove_member(access: ReadableList, user_id: MemberId) -> None:
    """With your own user id, leave the list (its owner can't: 409, transfer or delete it
    first). The owner removes another member with theirs (anyone else: 403).
    The list is then removed from that member's lists sync, its todos from their view."""
    await service.remove_member(
        caller=access.caller, list_id=access.list_id, user_id=user_id, role=access.role
    )


@router.post(
    "/lists/{list_id}/transfer",
    summary="Hand a list to another member",
    responses=error_responses(Forbidden, NotFound, Conflict),
)
async def transfer_list(
    access: OwnedList, body: ListTransfer, settings: SettingsDep, response: Response
) -> ListPublic:
    """Make a member of a list you own its owner; you become an editor. A default list can't
    be transferred (409), nor a list to someone who already owns MAX_LISTS_PER_USER (409);
    a user who isn't a member: 404."""
    transferred = await service.transfer_list(
        caller=access.caller,
        list_id=access.list_id,
        user_id=PydanticObjectId(body.user_id),
        max_lists=settings.max_lists_per_user,
    )
    return _with_etag(transferred, response)


def _with_etag(found: ListPublic, response: Response) -> ListPublic:
    response.headers["ETag"] = etag(found.version)
    return found
