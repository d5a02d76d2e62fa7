"""The change feed's API models: tickets and the data of its events."""

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
