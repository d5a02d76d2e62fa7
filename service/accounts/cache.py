"""Authentication from memory: the worker's cache of active sessions (with their users and the
documents a `Join` read along, a member's memberships), kept current by its access stream.

The product rule: a revocation (logout, logout everywhere, a password change, a session or an
account deleted, a member removed or their role lowered, ...) is refused on the very next
request of the worker that made it, and on every other worker within
AUTH_CACHE_MAX_STALENESS_MS. So:
- an entry is trusted only while the worker's access stream (service/core/watch.py) has caught
  up within that bound; a stream that fails drops every entry, and until it is back (and
  caught up) every request reads the database;
- the stream invalidates what each change touches: a session revoked or deleted, a user
  changed or deleted (all their entries: /api/me answers with the cached user), a joined
  document inserted (the user's entries) or changed (the entries holding it);
- a revocation made by this worker invalidates here before it answers: the stores call
  `core.watch.changed_here`, which reaches `invalidate` through the request's context;
- a fill read from the database is stored only if nothing was invalidated since before the
  read (the generation): else a revocation between the read and the store would be lost;
- every hit checks the session's expiry against the clock; entries are at most `max_entries`
  (least recently used go first).
It also remembers the access tokens whose signature and claims it has checked (verifying the
signature was most of what a cached request cost): the same string always checks the same
way, so only its expiry is looked at again, and an expired one takes the full check (which
says why it is refused).

Lists and memberships are not watched for their own sake: who may read a list is in its
memberships only (lists/access.py), and every change of that (a list deleted, handed over, a
member removed) writes the memberships, which the stream brings.
"""

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId

from service.accounts.models import Session, User
from service.accounts.store import Authenticated, Join
from service.core.store import id_of
from service.core.watch import AccessWatcher

# A user's entries are tagged with this collection's name and their id: a change of the
# user document, or of everything that decides what they may access, invalidates them.
USERS = User.Settings.name
SESSIONS = Session.Settings.name
DEFAULT_MAX_ENTRIES = 10_000

Key = tuple[str, Join | None]
Tag = tuple[str, Any]
# A checked access token's user, session id and expiry (a UNIX time).
Checked = tuple[PydanticObjectId, str, float]


@dataclass(frozen=True, slots=True)
class _Entry:
    found: Authenticated
    expires_at: datetime
    tags: tuple[Tag, ...]


class AuthCache:
    """Authenticated sessions of this worker by (session id, join); see the module."""

    def __init__(
        self,
        watcher: AccessWatcher,
        *,
        max_staleness_ms: int,
        joins: tuple[Join, ...] = (),
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._watcher = watcher
        self._bound = max_staleness_ms / 1000
        self._joins = {join.collection: join for join in joins}
        self._max_entries = max_entries
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._tagged: dict[Tag, set[Key]] = {}
        self._tokens: dict[str, Checked] = {}
        self.generation = 0
        if max_staleness_ms > 0:
            watcher.subscribe(self)

    @property
    def enabled(self) -> bool:
        """Whether entries are kept at all (a setting above 0, and change streams)."""
        return self._bound > 0 and self._watcher.available

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, session_id: str, user_id: PydanticObjectId, join: Join | None, now: datetime
    ) -> Authenticated | None:
        """The cached session if it may be trusted now; None to read the database."""
        entry = self._entries.get((session_id, join))
        if entry is None or not self._watcher.caught_up_within(self._bound):
            return None
        if entry.expires_at <= now or id_of(entry.found.user) != user_id:
            return None
        self._entries.move_to_end((session_id, join))
        return entry.found

    def checked(self, token: str) -> Checked | None:
        """What an unexpired access token checked before says, if it was."""
        found = self._tokens.get(token)
        if found is None or found[2] <= time.time():
            return None
        return found

    def keep_checked(self, token: str, checked: Checked) -> None:
        """Remember a token whose signature and claims were just checked (bounded: the oldest
        go first)."""
        if not self.enabled:
            return
        if len(self._tokens) >= self._max_entries:
            del self._tokens[next(iter(self._tokens))]
        self._tokens[token] = checked

    def put(self, generation: int, found: Authenticated, join: Join | None) -> None:
        """Keep what the database said, read after `generation` was taken, unless something
        was invalidated since."""
        if generation != self.generation or found.expires_at is None or not self.enabled:
            return
        key = (found.session_id, join)
        self._forget(key)
        tags: list[Tag] = [(SESSIONS, found.session_id), (USERS, id_of(found.user))]
        if join is not None:
            for document in found.joined:
                tags.append((join.collection, document["_id"]))
                tags.extend((collection, document.get(field)) for field, collection in join.refers)
        entry = _Entry(found, found.expires_at, tuple(tags))
        self._entries[key] = entry
        for tag in entry.tags:
            self._tagged.setdefault(tag, set()).add(key)
        while len(self._entries) > self._max_entries:
            self._forget(next(iter(self._entries)))

    def invalidate(self, collection: str, ids: tuple[Any, ...]) -> None:
        """Forget every entry that holds one of these documents (USERS: everything of the
        user); the core.watch.Listener of this worker's requests."""
        self.generation += 1
        for document_id in ids:
            for key in list(self._tagged.get((collection, document_id), ())):
                self._forget(key)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._tagged.clear()

    def _forget(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for tag in entry.tags:
            keys = self._tagged.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tagged[tag]

    # ---- the access stream (core.watch.AccessSubscriber) ----

    def branches(self) -> list[dict[str, Any]]:
        """Revocations and deletions of sessions (not their refreshes), any change of a user
        but their signup, any change of a joined collection."""
        changes = ["update", "replace", "delete"]
        return [
            {"ns.coll": SESSIONS, "operationType": "delete"},
            {"ns.coll": SESSIONS, "updateDescription.updatedFields.revoked": True},
            {"ns.coll": USERS, "operationType": {"$in": changes}},
            *(
                {"ns.coll": collection, "operationType": {"$in": ["insert", *changes]}}
                for collection in self._joins
            ),
        ]

    async def on_change(self, event: Mapping[str, Any]) -> None:
        collection = (event.get("ns") or {}).get("coll")
        operation = event.get("operationType")
        key = (event.get("documentKey") or {}).get("_id")
        if collection == SESSIONS:
            updated = (event.get("updateDescription") or {}).get("updatedFields") or {}
            if operation == "delete" or updated.get("revoked") is True:
                self.invalidate(SESSIONS, (key,))
        elif collection == USERS:
            if operation != "insert":
                self.invalidate(USERS, (key,))
        elif (join := self._joins.get(str(collection))) is not None:
            if operation == "insert":
                # A new document of the user's (a membership): their entries lack it.
                user_id = (event.get("fullDocument") or {}).get(join.foreign_field)
                self.invalidate(USERS, (user_id,))
            else:
                self.invalidate(join.collection, (key,))

    def on_interrupted(self) -> None:
        """Changes may come late: trust nothing kept so far."""
        self.clear()

    def on_gap(self) -> None:
        self.clear()
