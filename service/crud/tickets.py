"""One-time tickets for the change feed (browsers' EventSource can't send Authorization)."""

import hashlib
import secrets
from datetime import datetime, timedelta

from beanie import PydanticObjectId

from service.budget import budgeted
from service.models import EventTicket, SessionKey, utc_now

TICKET_LIFETIME = timedelta(seconds=60)


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@budgeted
async def create_ticket(
    *, owner_id: PydanticObjectId, session_id: SessionKey, stream_until: datetime
) -> str:
    """A new ticket for the owner's session, valid once within TICKET_LIFETIME."""
    ticket = secrets.token_urlsafe(32)
    await EventTicket(
        ticket_hash=_hash(ticket),
        owner_id=owner_id,
        session_id=session_id,
        expires_at=utc_now() + TICKET_LIFETIME,
        stream_until=stream_until,
    ).insert()
    return ticket


@budgeted
async def redeem_ticket(*, ticket: str) -> EventTicket | None:
    """The ticket's record, deleted in the same operation so it works once; None if unusable.

    Whether its session is still active is for the caller to check (crud.streams).
    """
    raw = await EventTicket.get_pymongo_collection().find_one_and_delete(
        # Tickets from before sessions were recorded on them are unusable.
        {
            "ticket_hash": _hash(ticket),
            "expires_at": {"$gt": utc_now()},
            "session_id": {"$exists": True},
        }
    )
    return None if raw is None else EventTicket.model_validate(raw)
