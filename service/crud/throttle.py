"""Attempt counters in fixed windows, kept in MongoDB so every worker and replica shares them.

A window opens at the first hit and lasts `window`; a counter whose window has passed counts
as zero whether or not the TTL monitor (about once a minute) has removed it yet.
"""

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from service.budget import budgeted
from service.models import ThrottleCounter, as_utc

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
        return max(1, math.ceil((as_utc(self.expires_at) - now).total_seconds()))


@budgeted
async def hit(*, kind: str, subject: str, now: datetime, window: timedelta) -> Count:
    """Count one attempt, opening a new window if none is running; the count after it."""
    collection = ThrottleCounter.get_pymongo_collection()
    key = counter_key(kind, subject)
    # update_one, not find_one_and_update: SecantusDB's findAndModify scans the collection.
    for _ in range(_MAX_ROUNDS):
        counted = await collection.update_one(
            {"_id": key, "expires_at": {"$gt": now}}, {"$inc": {"hits": 1}}
        )
        if counted.matched_count == 1:
            stored = await collection.find_one({"_id": key})
            if stored is not None:  # else it expired and was swept right now: count anew
                return Count(stored["hits"], stored["expires_at"])
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


@budgeted
async def current(
    *, subjects: list[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], Count]:
    """Running windows' counts for these (kind, subject) pairs, in one query; none → left out."""
    keys = {counter_key(kind, subject): (kind, subject) for kind, subject in subjects}
    found = (
        await ThrottleCounter.get_pymongo_collection()
        .find({"_id": {"$in": list(keys)}, "expires_at": {"$gt": now}})
        .to_list(len(keys))
    )
    return {keys[doc["_id"]]: Count(doc["hits"], doc["expires_at"]) for doc in found}


@budgeted
async def clear(*, kind: str, subject: str) -> None:
    """Forget the subject's count (after a successful login, say)."""
    await ThrottleCounter.get_pymongo_collection().delete_one({"_id": counter_key(kind, subject)})
