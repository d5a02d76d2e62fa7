"""The change feed's API models: tickets, the data of its events, and the stream's OpenAPI."""

from typing import Any

from pydantic import (
    BaseModel,
    Field,
)


class EventTicketOut(BaseModel):
    ticket: str = Field(description="Pass as `ticket` to GET /api/todos/events, once.")
    expires_in: int = Field(description="Seconds the ticket stays valid.")


class ReadyEventData(BaseModel):
    """The data of `event: ready`, the first event of every change feed stream."""

    resumed: bool = Field(
        description="True when the stream starts by catching up on changes after Last-Event-ID."
    )


class RevokedEventData(BaseModel):
    """The data of `event: revoked`, the last event of a stream whose session ended."""

    detail: str = Field(description="Why the stream ends: log in again to open a new one.")


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


# Each event the stream sends (`: heartbeat` comments aren't events: parsers skip them).
EVENT_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One server-sent event: `ready` first (its `id` is the feed's position), then "
        "`created`, `updated` and `deleted` (each `id` a resume token for Last-Event-ID), and "
        "`revoked` (no `id`) as the last event when the session ends. After "
        "FEED_HEARTBEAT_SECONDS of silence the stream sends a `: heartbeat` comment line, "
        "which is not an event."
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
        _event_item("revoked", RevokedEventData.model_json_schema(), has_id=False),
    ],
}

# The 200 answer of GET /api/todos/events, as OpenAPI `responses` lists it.
EVENT_STREAM_RESPONSE: dict[str, Any] = {
    "content": {"text/event-stream": {"itemSchema": EVENT_ITEM_SCHEMA}},
    "description": (
        "`event: ready` first, then `event: created|updated|deleted` with `id: <resume "
        "token>` and `data: <todo JSON or tombstone>`; `: heartbeat` comments; "
        "`event: revoked` last if the session ends."
    ),
}
