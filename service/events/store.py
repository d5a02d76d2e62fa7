"""Every database query of the change feed: one-time tickets, stream slots, the session check.

Tickets exist because browsers' EventSource can't send Authorization.

A user's open streams are counted in MongoDB, so that every worker (and every replica) shares
the count: each stream holds one of the user's `max_per_user` slots, a document
`"<user id>:<n>"` leased to the worker serving it until `expires_at`. Taking a slot is one
upsert whose filter matches only a free (expired) slot, so of two requests racing for the same
slot the unique `_id` lets exactly one win. The worker renews its leases while its streams run
(one update for all of them) and deletes each when its stream ends; a crashed worker's slots
free themselves when their lease runs out (LEASE).
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from service.accounts.models import Session
from service.accounts.store import Join
from service.core.budget import budgeted
from service.core.clock import utc_now
from service.events.models import EventTicket, FeedStreamSlot

# ---- one-time tickets ----

TICKET_LIFETIME = timedelta(seconds=60)


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@budgeted
async def create_ticket(
    *, owner_id: PydanticObjectId, session_id: str, stream_until: datetime
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

    Whether its session is still active is for the caller to check (session_expiry).

    findAndModify, although SecantusDB's scans the collection (see core.store.update_then_read):
    this one holds only tickets of the last TICKET_LIFETIME (a TTL index removes the rest), so
    the scan is short, and one operation is what makes a ticket usable once.
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


@budgeted
async def delete_tickets_of(
    *, owner_id: PydanticObjectId, session: AsyncClientSession | None
) -> None:
    """Delete every ticket of the owner; in `session`'s transaction if given."""
    await EventTicket.get_pymongo_collection().delete_many({"owner_id": owner_id}, session=session)


# ---- stream slots ----

LEASE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class SlotLease:
    """A slot this worker holds, and the lease id that proves it is still this lease."""

    slot_id: str
    lease: str


@budgeted
async def take_slot(
    *, user_id: PydanticObjectId, max_per_user: int, worker: str, now: datetime
) -> SlotLease | None:
    """One of the user's free stream slots, now leased to `worker`; None if all are taken.

    Optimistic: one random slot first (one write when the user has few streams open); if it
    is held, the ones still free are read and tried in turn.
    """
    slot_ids = [f"{user_id}:{n}" for n in range(max_per_user)]
    lease = await _lease(secrets.choice(slot_ids), worker=worker, now=now)
    if lease is not None:
        return lease
    # The user's slots are the ids "<user id>:..." (";" sorts right after ":"): one range of
    # the _id index (an $in of many ids is slow on SecantusDB).
    held = {
        document["_id"]
        async for document in FeedStreamSlot.get_pymongo_collection().find(
            {"_id": {"$gt": f"{user_id}:", "$lt": f"{user_id};"}, "expires_at": {"$gt": now}},
            {"_id": 1},
        )
    }
    free = [slot_id for slot_id in slot_ids if slot_id not in held]
    # In random order: parallel requests mostly try different slots instead of racing.
    secrets.SystemRandom().shuffle(free)
    for slot_id in free:
        lease = await _lease(slot_id, worker=worker, now=now)
        if lease is not None:
            return lease
    return None


async def _lease(slot_id: str, *, worker: str, now: datetime) -> SlotLease | None:
    """Lease the slot if it is free (never leased, or its lease ran out); None if held."""
    lease = secrets.token_hex(8)
    try:
        # Matches only an expired lease; inserts the slot if it never existed; and if it is
        # held, the insert collides with it on _id.
        await FeedStreamSlot.get_pymongo_collection().update_one(
            {"_id": slot_id, "expires_at": {"$lte": now}},
            {"$set": {"worker": worker, "lease": lease, "expires_at": now + LEASE}},
            upsert=True,
        )
    except DuplicateKeyError:
        return None
    return SlotLease(slot_id, lease)


@budgeted
async def renew_slots(*, worker: str, now: datetime) -> None:
    """Extend every lease `worker` holds by LEASE from `now`."""
    await FeedStreamSlot.get_pymongo_collection().update_many(
        {"worker": worker}, {"$set": {"expires_at": now + LEASE}}
    )


@budgeted
async def release_slot(*, slot: SlotLease) -> None:
    """Free a slot, unless its lease ran out and someone else holds it now."""
    await FeedStreamSlot.get_pymongo_collection().delete_one(
        {"_id": slot.slot_id, "lease": slot.lease}
    )


@budgeted
async def release_worker_slots(*, worker: str) -> None:
    """Free every slot `worker` holds (on shutdown)."""
    await FeedStreamSlot.get_pymongo_collection().delete_many({"worker": worker})


# ---- the session a stream runs on ----


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A stream's session, active: when it expires, and the documents `join` read with it."""

    expires_at: datetime
    joined: list[dict[str, Any]]


@budgeted
async def active_session(
    *, session_id: str, user_id: PydanticObjectId, now: datetime, join: Join | None = None
) -> ActiveSession | None:
    """The user's session if it is active and the user exists, with `join`'s documents (the
    user's memberships, say) read in the same round trip; else None."""
    pipeline: list[dict[str, Any]] = [
        {
            "$match": {
                "_id": session_id,
                "user_id": user_id,
                "revoked": False,
                "expires_at": {"$gt": now},
            }
        },
        {"$limit": 1},
        {"$lookup": {"from": "users", "localField": "user_id", "foreignField": "_id", "as": "u"}},
    ]
    projection: dict[str, Any] = {"expires_at": 1, "u._id": 1}
    if join is not None:
        pipeline.append(join.lookup("j"))
        projection["j"] = 1
    pipeline.append({"$project": projection})
    cursor = await Session.get_pymongo_collection().aggregate(pipeline)
    found = await cursor.to_list(1)
    if not found or not found[0]["u"]:
        return None
    return ActiveSession(expires_at=found[0]["expires_at"], joined=found[0].get("j", []))
