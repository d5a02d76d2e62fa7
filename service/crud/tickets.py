"""One-time tickets for the change feed (browsers' EventSource can't send Authorization)."""

import hashlib
import secrets
from datetime import datetime, timedelta

from beanie import PydanticObjectId

from service.budget import budgeted
from service.models import EventTicket, utc_now

TICKET_LIFETIME = timedelta(seconds=60)


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@budgeted
async def create_ticket(*, owner_id: PydanticObjectId, stream_until: datetime) -> str:
    """A new ticket for the owner, valid once within TICKET_LIFETIME."""
    ticket = secrets.token_urlsafe(32)
    await EventTicket(
        ticket_hash=_hash(ticket),
        owner_id=owner_id,
        expires_at=utc_now() + TICKET_LIFETIME,
        stream_until=stream_until,
    ).insert()
    return ticket


@budgeted
async def redeem_ticket(*, ticket: str) -> EventTicket | None:
    """The ticket's record, deleted in the same operation so it works once; None if unusable."""
    raw = await EventTicket.get_pymongo_collection().find_one_and_delete(
        {"ticket_hash": _hash(ticket), "expires_at": {"$gt": utc_now()}}
    )
    return None if raw is None else EventTicket.model_validate(raw)
