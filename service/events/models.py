"""Beanie documents of the change feed: tickets and stream slots."""

from datetime import datetime
from typing import Annotated, ClassVar

import pymongo
from beanie import Document, Indexed, PydanticObjectId

ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING


class EventTicket(Document):
    """A one-time ticket that opens the change feed without an Authorization header."""

    # Only a hash is stored: the ticket itself is a bearer credential.
    ticket_hash: Annotated[str, Indexed(unique=True)]
    owner_id: PydanticObjectId
    # The session that asked for it: the ticket (and its stream) end with that session.
    session_id: str
    expires_at: datetime
    # When the access token that asked for the ticket expires; the stream closes then.
    stream_until: datetime

    class Settings:
        name = "event_tickets"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel(
                [("expires_at", ASC)], expireAfterSeconds=0, name="event_tickets_ttl"
            )
        ]


class FeedStreamSlot(Document):
    """One of a user's MAX_STREAMS_PER_USER open change-feed streams, leased by a worker."""

    id: str  # type: ignore[assignment]  # "<user id>:<slot number>" instead of an ObjectId
    # The worker serving the stream (it renews and frees its leases) and this lease's own id.
    worker: str
    lease: str
    # The slot is free again after this: a crashed worker's streams can't hold slots for long.
    expires_at: datetime

    class Settings:
        name = "feed_stream_slots"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel([("worker", ASC)], name="feed_stream_slots_worker"),
            pymongo.IndexModel(
                [("expires_at", ASC)], expireAfterSeconds=0, name="feed_stream_slots_ttl"
            ),
        ]
