"""The change feed's API models: tickets, the data of its events, and the stream's OpenAPI."""

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from service.core.schemas import UtcDatetime

# A member's role (lists.models.Role), spelt out: an enum would be a `$ref` to `$defs`, which
# the event item's nested contentSchema can't resolve.
RoleName = Literal["owner", "editor", "viewer"]


class EventTicketOut(BaseModel):
    ticket: str = Field(description="Pass as `ticket` to GET /api/todos/events, once.")
    expires_in: int = Field(description="Seconds the ticket stays valid.")


class ReadyEventData(BaseModel):
    """The data of `event: ready`, the first event of every change feed stream."""

    resumed: bool = Field(
        description="True when the stream starts by catching up on changes after Last-Event-ID."
    )
    lists: list[str] = Field(
        default_factory=list,
        description=(
            "The ids of the lists whose changes this stream carries (every list you can read, "
            "as the stream opens). Drop the todos of any list you hold that isn't here: you "
            "can't read it any more. Lists change while the stream runs with `list_created`, "
            "`member_added` (yours: start reading it) and `list_removed`."
        ),
    )


class RevokedEventData(BaseModel):
    """The data of `event: revoked`, the last event of a stream whose session ended."""

    detail: str = Field(description="Why the stream ends: log in again to open a new one.")


class ListEventData(BaseModel):
    """The data of `event: list_created` (the whole list) and `event: list_updated` (its id and
    what changed: the name, the member count, the owner, your role, with the new version)."""

    id: str = Field(description="The list's id.")
    name: str | None = None
    role: RoleName | None = Field(default=None, description="Your role in the list.")
    is_default: bool | None = None
    owner_id: str | None = Field(default=None, description="The list's owner, when it changed.")
    member_count: int | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    version: int | None = None


class ListRemovedData(BaseModel):
    """The data of `event: list_removed`: you can no longer read this list (you left or were
    removed, or it was deleted). The stream carries nothing more of it: drop its todos."""

    id: str = Field(description="The list's id.")


class MemberEventData(BaseModel):
    """The data of `event: member_added` and `event: member_removed`."""

    list_id: str
    user_id: str = Field(description="The member added or removed.")
    role: RoleName | None = Field(default=None, description="The new member's role (added only).")


def _event_item(name: str, data_schema: dict[str, Any], *, has_id: bool = True) -> dict[str, Any]:
    """One kind of event in the stream, as OpenAPI 3.2's `itemSchema` describes items."""
    return {
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data_schema,
            },
        },
        "required": ["event", "data", "id"] if has_id else ["event", "data"],
    }


def _todo_ref(model: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model}"}


def _list_event_item(name: str, model: type[BaseModel]) -> dict[str, Any]:
    return _event_item(name, model.model_json_schema(), has_id=False)


# Each event the stream sends (`: heartbeat` comments aren't events: parsers skip them).
EVENT_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One server-sent event: `ready` first (its `id` is the feed's position), then "
        "`created`, `updated` and `deleted` for the todos of every list you can read (each `id` "
        "a resume token for Last-Event-ID; a todo moved out of your view is `deleted` from the "
        "list it left), the list events `list_created`, `list_updated`, `list_removed`, "
        "`member_added` and `member_removed` (no `id`: after reconnecting, `ready` lists the "
        "lists you read, and lists sync says what changed in them), and `revoked` (no `id`) as "
        "the last event when the session ends. After FEED_HEARTBEAT_SECONDS of silence the "
        "stream sends a `: heartbeat` comment line, which is not an event."
    ),
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["event", "data"],
    "oneOf": [
        _event_item("ready", ReadyEventData.model_json_schema()),
        _event_item("created", _todo_ref("TodoPublic")),
        _event_item("updated", _todo_ref("TodoPublic")),
        _event_item("deleted", _todo_ref("TodoTombstone")),
        _list_event_item("list_created", ListEventData),
        _list_event_item("list_updated", ListEventData),
        _list_event_item("list_removed", ListRemovedData),
        _list_event_item("member_added", MemberEventData),
        _list_event_item("member_removed", MemberEventData),
        _event_item("revoked", RevokedEventData.model_json_schema(), has_id=False),
    ],
}

# The 200 answer of GET /api/todos/events, as OpenAPI `responses` lists it.
EVENT_STREAM_RESPONSE: dict[str, Any] = {
    "content": {"text/event-stream": {"itemSchema": EVENT_ITEM_SCHEMA}},
    "description": (
        "`event: ready` first, then `event: created|updated|deleted` with `id: <resume "
        "token>` and `data: <todo JSON or tombstone>`, list events (`list_created`, "
        "`list_updated`, `list_removed`, `member_added`, `member_removed`) without `id`; "
        "`: heartbeat` comments; `event: revoked` last if the session ends."
    ),
}
