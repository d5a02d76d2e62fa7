"""How many exports run at once: EXPORTS_PER_USER per user (429 past it) and
EXPORTS_PER_WORKER in all (503 past it), counted in this worker's memory.

An export holds a database cursor, a batch of up to 500 todos and a share of the event loop
for as long as its client takes to read it: 50 parallel exports of a 10 000-todo account
made other users' requests time out (503), and a few stalled readers held 155 MB.

Counted per worker, in memory, unlike the live feed's MAX_STREAMS_PER_USER (a slot leased in
MongoDB and renewed while the stream runs, because a feed stream stays open for hours and
a user's tabs land on any worker). An export lasts seconds: a leased slot would add two
writes to every export, a renewal task for the slow ones, and leave a crashed worker's
slots taken until their lease expires; and what it protects (the worker's memory, event
loop and connection pool) is per worker anyway. So a user gets at most EXPORTS_PER_USER
exports per worker, EXPORTS_PER_USER x workers in all: a known bound, like the import
parser's (transfer/parsing.py).
"""

from dataclasses import dataclass, field
from typing import ClassVar

from beanie import PydanticObjectId

from service.errors import ServiceUnavailable, TooManyRequests

# An export of 10 000 todos takes one to a few seconds (bench/export_memory.py).
EXPORTS_RETRY_AFTER_SECONDS = 5


class ExportsBusy(ServiceUnavailable):
    """503: this worker already streams EXPORTS_PER_WORKER exports."""

    detail = "The server is streaming as many exports as it takes at once: try again shortly"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": str(EXPORTS_RETRY_AFTER_SECONDS)}


class TooManyExports(TooManyRequests):
    """429: the user already has EXPORTS_PER_USER exports running (on this worker)."""

    def __init__(self, per_user: int) -> None:
        super().__init__(
            f"You already have {per_user} exports running: wait for one to finish",
            retry_after=EXPORTS_RETRY_AFTER_SECONDS,
        )


@dataclass(eq=False)
class ExportSlot:
    """One running export's place; `release` gives it back (once, however often called)."""

    slots: "ExportSlots"
    user_id: PydanticObjectId
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.slots._give_back(self.user_id)


@dataclass(eq=False)
class ExportSlots:
    """The worker's export slots: `per_user` for each user, `per_worker` in all."""

    per_user: int
    per_worker: int
    _by_user: dict[PydanticObjectId, int] = field(default_factory=dict)
    _running: int = 0

    @property
    def running(self) -> int:
        return self._running

    def running_for(self, user_id: PydanticObjectId) -> int:
        return self._by_user.get(user_id, 0)

    def take(self, user_id: PydanticObjectId) -> ExportSlot:
        """A slot for one export of the user's, or ExportsBusy (503) / TooManyExports (429).

        Synchronous: checked and counted with no await in between, so no number of parallel
        requests gets past the bounds. The worker's bound first: when it is full, nobody's
        export starts, whatever their own count.
        """
        if self._running >= self.per_worker:
            raise ExportsBusy
        mine = self._by_user.get(user_id, 0)
        if mine >= self.per_user:
            raise TooManyExports(self.per_user)
        self._by_user[user_id] = mine + 1
        self._running += 1
        return ExportSlot(self, user_id)

    def _give_back(self, user_id: PydanticObjectId) -> None:
        self._running -= 1
        left = self._by_user[user_id] - 1
        if left:
            self._by_user[user_id] = left
        else:
            # No entry per user who ever exported: the dict holds running exports only.
            del self._by_user[user_id]
