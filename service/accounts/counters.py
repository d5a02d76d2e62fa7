"""The atomic attempt counters the throttling rules (throttling.py) are kept in: fixed
windows in MongoDB, so that every worker and replica shares them.

A window opens at the first hit and lasts `window`; a counter whose window has passed counts
as zero whether or not the TTL monitor (about once a minute) has removed it yet.

`hit` counts every attempt (signups); `reserve` counts an attempt before it is made, and only
up to a limit, so a burst of parallel requests can't all pass a check made before any of them
was counted (failed logins, refreshes).
"""

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from service.accounts.models import ThrottleCounter
from service.core.budget import budgeted
from service.core.store import StoredDocument, update_then_read

# Each round either finds a live window or opens one; losing the race to open it twice in a
# row would need two other writers to both open and expire a window in between.
_MAX_ROUNDS = 3


def counter_key(kind: str, subject: str) -> str:
    """The counter's id: a hash, so that emails (mistyped ones too) aren't stored in clear."""
    return hashlib.sha256(f"{kind}:{subject}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Count:
    hits: int
    expires_at: datetime

    def retry_after(self, now: datetime) -> int:
        """Whole seconds until the window closes, at least 1."""
        return max(1, math.ceil((self.expires_at - now).total_seconds()))


def _counters() -> AsyncCollection[StoredDocument]:
    # Every operation here is a conditional update or upsert whose outcome (matched or not, a
    # duplicate key) is the answer, which pymongo reports and Beanie's update API hides: so
    # the collection, not the document class. ThrottleCounter describes what is stored (and
    # declares its TTL index).
    return ThrottleCounter.get_pymongo_collection()


def _count(stored: StoredDocument) -> Count:
    counter = ThrottleCounter.model_validate(stored)
    return Count(counter.hits, counter.expires_at)


@budgeted
async def hit(*, kind: str, subject: str, now: datetime, window: timedelta) -> Count:
    """Count one attempt, opening a new window if none is running; the count after it."""
    collection = _counters()
    key = counter_key(kind, subject)
    for _ in range(_MAX_ROUNDS):
        counted, stored = await update_then_read(
            collection, {"_id": key, "expires_at": {"$gt": now}}, {"$inc": {"hits": 1}}
        )
        if counted:
            if stored is not None:  # else it expired and was swept right now: count anew
                return _count(stored)
            continue
        try:
            # Replaces a window that has passed, or inserts the first one. If another request
            # opened a window meanwhile, the filter misses it and the upsert's insert collides
            # on _id: go round and count in that window instead.
            await collection.update_one(
                {"_id": key, "expires_at": {"$lte": now}},
                {
                    "$set": {
                        "kind": kind,
                        "hits": 1,
                        "window_start": now,
                        "expires_at": now + window,
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:
            continue
        return Count(1, now + window)
    raise RuntimeError(f"could not count a {kind} attempt")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Reserved:
    """A slot taken in the subject's budget (`reserve`)."""

    kind: str
    subject: str


@dataclass(frozen=True, slots=True)
class Full:
    """The subject's budget is used up until the window ends."""

    count: Count


@budgeted
async def reserve(
    *, kind: str, subject: str, now: datetime, window: timedelta, limit: int
) -> Reserved | Full:
    """Take one of the `limit` slots of the subject's running window (opening one if none is
    running), or tell that all are taken: one conditional update, so that of any number of
    concurrent callers at most `limit` get a slot. A slot is kept (it counts as an attempt)
    unless given back with `release`.

    One round trip when there is room or no counter yet; a full window costs two (and a
    window that has passed, once per window, three).
    """
    collection = _counters()
    key = counter_key(kind, subject)
    for _ in range(_MAX_ROUNDS):
        try:
            # Counts in a running window with room, or inserts the first window. A counter
            # that is full or has passed makes the insert collide on _id instead.
            await collection.update_one(
                {"_id": key, "expires_at": {"$gt": now}, "hits": {"$lt": limit}},
                {
                    "$inc": {"hits": 1},
                    "$setOnInsert": {"kind": kind, "window_start": now, "expires_at": now + window},
                },
                upsert=True,
            )
        except DuplicateKeyError:
            pass
        else:
            return Reserved(kind, subject)
        running = await collection.find_one({"_id": key, "expires_at": {"$gt": now}})
        if running is not None:
            count = _count(running)
            if count.hits >= limit:
                return Full(count)
            continue  # a slot was given back meanwhile
        # The window has passed: open a new one in its place, unless another request just
        # did (or the TTL monitor removed it: then the next round inserts one).
        reopened = await collection.update_one(
            {"_id": key, "expires_at": {"$lte": now}},
            {"$set": {"kind": kind, "hits": 1, "window_start": now, "expires_at": now + window}},
        )
        if reopened.matched_count == 1:
            return Reserved(kind, subject)
    raise RuntimeError(f"could not reserve a {kind} attempt")  # pragma: no cover


@budgeted
async def release(*, reserved: Reserved, now: datetime) -> None:
    """Give a reserved slot back (the attempt turned out not to count).

    If the window closed meanwhile, the slot went with it; a window opened since by someone
    else loses one count instead, at most one per release at that very instant.
    """
    await _counters().update_one(
        {
            "_id": counter_key(reserved.kind, reserved.subject),
            "expires_at": {"$gt": now},
            "hits": {"$gt": 0},
        },
        {"$inc": {"hits": -1}},
    )


@budgeted
async def clear(*, kind: str, subject: str) -> None:
    """Forget the subject's count (after a successful login, say)."""
    await _counters().delete_one({"_id": counter_key(kind, subject)})


@budgeted
async def reserve_rolling(
    *, kind: str, subject: str, now: datetime, window: timedelta, limit: int
) -> Reserved | Full:
    """Count one attempt of the subject if fewer than `limit` were counted in the `window`
    before `now` (a rolling window: any `window` long span holds at most `limit`), or tell
    that none may be made until the oldest of them leaves the window.

    The counter keeps the instant of each attempt it counted (at most `limit` of them), and
    takes a new one with one conditional update (room: no `limit`-th instant stored), so of
    any number of concurrent callers at most the room left get through. Instants that have
    left the window are dropped only when the counter is full. One round trip while there is
    room; three when full (try, drop the old ones, read when the next slot frees).
    """
    collection = _counters()
    key = counter_key(kind, subject)
    for _ in range(_MAX_ROUNDS):
        try:
            # Counts if there is room, or inserts the counter. A full one makes the insert
            # collide on _id instead.
            await collection.update_one(
                {"_id": key, f"sent.{limit - 1}": {"$exists": False}},
                {
                    "$push": {"sent": now},
                    "$max": {"expires_at": now + window},
                    "$setOnInsert": {"kind": kind},
                },
                upsert=True,
            )
        except DuplicateKeyError:
            pass
        else:
            return Reserved(kind, subject)
        dropped = await collection.update_one(
            {"_id": key}, {"$pull": {"sent": {"$lte": now - window}}}
        )
        if dropped.modified_count:
            continue  # room again
        running = await collection.find_one({"_id": key})
        if running is None:
            continue  # the TTL monitor removed it: the next round inserts one
        sent = ThrottleCounter.model_validate(running).sent
        if len(sent) >= limit:
            return Full(Count(len(sent), min(sent) + window))
        # Room was made meanwhile (another request dropped old instants): try again.
    raise RuntimeError(f"could not reserve a {kind} attempt")  # pragma: no cover
