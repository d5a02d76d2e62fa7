"""What lists and their members send and receive over the wire."""

from typing import Annotated, Any, Literal, Self

from beanie import PydanticObjectId
from pydantic import AfterValidator, BaseModel, Field

from service.core.schemas import NOT_BLANK, InputModel, UtcDatetime, trim
from service.lists.models import Role

# Instant is how every query parameter takes a datetime (todo sync's `updated_since` too), and
# Cursor a page cursor whose syntax is checked where it is decoded (a 400, not a 422).
from service.todos.schemas import Cursor, Instant

LIST_NAME_MAX_LENGTH = 100
OBJECT_ID_PATTERN = r"^[0-9a-fA-F]{24}$"

ListName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=LIST_NAME_MAX_LENGTH,
        pattern=NOT_BLANK,
        description=f"1 to {LIST_NAME_MAX_LENGTH} characters, not all white space; "
        "leading and trailing white space is removed.",
    ),
    AfterValidator(trim),
]


class ListCreate(InputModel):
    name: ListName


class ListUpdate(InputModel):
    """A rename: the name is the one thing of a list its owner sets."""

    name: ListName


# The roles an owner can give: there is one owner, made only by a transfer.
MemberRole = Literal["editor", "viewer"]


class MemberUpdate(InputModel):
    role: MemberRole


class ListTransfer(InputModel):
    user_id: Annotated[
        str, Field(pattern=OBJECT_ID_PATTERN, description="A member of the list, its new owner.")
    ]


class ListQuery(BaseModel):
    """The query of GET /api/lists: a page of the caller's lists, or lists sync.

    Not an InputModel: query strings are text to coerce, and unknown parameters are ignored,
    as they are for every other route.
    """

    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[
        Cursor | None,
        Field(description="`next_cursor` of the previous page; only valid with the same query."),
    ] = None
    updated_since: Annotated[
        Instant | None,
        Field(
            description=(
                "Lists sync: only the lists whose `List` changed for you after this instant, "
                "and those you can no longer read, up to the answer's `watermark`. A datetime "
                "with an offset."
            )
        ),
    ] = None


class ListOwner(BaseModel):
    id: str
    fname: str
    lname: str


class ListPublic(BaseModel):
    """A list as one of its members sees it."""

    id: str
    name: str
    is_default: bool = Field(description="True only in its owner's view of their default list.")
    role: Role = Field(description="Your role in the list.")
    owner: ListOwner
    member_count: int = Field(description="Members, the owner included.")
    created_at: UtcDatetime
    updated_at: UtcDatetime
    version: int

    @classmethod
    def from_stored(
        cls, stored: dict[str, Any], *, caller_id: PydanticObjectId, role: Role
    ) -> Self:
        """A stored list read with its owner (`owner`: the user documents its $lookup found)
        as `caller_id`, whose role in it is `role`, sees it."""
        owners = stored.get("owner") or []
        # Empty only if the owner's account was deleted as this list was read: its deletion
        # deletes the list too.
        owner = owners[0] if owners else {}
        return cls(
            id=str(stored["_id"]),
            name=stored["name"],
            is_default=stored["is_default"] and stored["owner_id"] == caller_id,
            role=role,
            owner=ListOwner(
                id=str(stored["owner_id"]),
                fname=owner.get("fname", ""),
                lname=owner.get("lname", ""),
            ),
            member_count=stored["member_count"],
            created_at=stored["created_at"],
            updated_at=stored["updated_at"],
            version=stored["version"],
        )


class ListPage(BaseModel):
    items: list[ListPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class ListRemoved(BaseModel):
    """A list you could read and no longer can: deleted, or you left or were removed."""

    id: str
    removed: Literal[True] = True


class ListChanges(BaseModel):
    """A lists-sync page: what changed for you after `updated_since`, up to `watermark`."""

    items: list[ListPublic | ListRemoved]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same query) for the rest of this answer."
    )
    watermark: UtcDatetime = Field(
        description=(
            "The answer is complete up to this instant: pass it as the next `updated_since`."
        )
    )


class MemberUser(BaseModel):
    id: str
    email: str
    fname: str
    lname: str


class MemberPublic(BaseModel):
    user: MemberUser
    role: Role
    added_at: UtcDatetime

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> Self:
        """A stored membership read with its user (`user`: what its $lookup found)."""
        users = stored.get("user") or []
        # Empty only if the account was deleted as the members were read.
        user = users[0] if users else {}
        return cls(
            user=MemberUser(
                id=str(stored["user_id"]),
                email=user.get("email", ""),
                fname=user.get("fname", ""),
                lname=user.get("lname", ""),
            ),
            role=stored["role"],
            added_at=stored["added_at"],
        )
