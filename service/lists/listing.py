"""GET /api/lists: a page of the caller's lists, or lists sync (what changed for them).

Both start from the caller's memberships, which came with their session (lists/access.Caller):
which lists they can read, which they could and no longer can, and when each membership last
changed. So each is one query of the lists by _id, bounded by the caller's memberships.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beanie import PydanticObjectId
from bson.errors import InvalidId

from service.config import Settings
from service.core.budget import budgeted
from service.core.clock import as_utc, utc_now
from service.core.pagination import (
    CursorMismatchError,
    InvalidCursorError,
    decode_cursor,
    encode_cursor,
    fingerprint,
)
from service.errors import BadRequest, Gone
from service.lists import store
from service.lists.access import Caller
from service.lists.models import Role
from service.lists.schemas import ListChanges, ListPage, ListPublic, ListQuery, ListRemoved


@budgeted
async def list_lists(
    *, caller: Caller, query: ListQuery, settings: Settings
) -> ListPage | ListChanges:
    """A page of the lists the caller can read (their default list first, then oldest first),
    or with `updated_since` what changed for them. BadRequest for an unusable cursor, Gone
    for an `updated_since` older than the tombstones kept."""
    if query.updated_since is not None:
        return await _list_changes(caller=caller, query=query, settings=settings)
    query_fingerprint = fingerprint({"lists_of": str(caller.user_id)})
    after = None
    if query.cursor is not None:
        after = _page_position(_decode(query.cursor, query_fingerprint)[0])
    # One extra tells whether there is a next page, without a count.
    found = await store.page_lists(
        list_ids=caller.readable(),
        first_id=caller.default_list_id,
        after=after,
        limit=query.limit + 1,
    )
    page = found[: query.limit]
    next_cursor = None
    if len(found) > query.limit:
        last = page[-1]
        key = [last["rank"], _instant_to_json(last["created_at"]), str(last["_id"])]
        next_cursor = encode_cursor(key, query_fingerprint)
    return ListPage(items=[_public(caller, stored) for stored in page], next_cursor=next_cursor)


def _public(caller: Caller, stored: dict[str, Any]) -> ListPublic:
    role = caller.role_in(stored["_id"])
    if role is None:  # page_lists only reads lists the caller can read
        raise ValueError("not a list of the caller")
    return ListPublic.from_stored(stored, caller_id=caller.user_id, role=role)


@dataclass(frozen=True, slots=True)
class _Change:
    """One item of a lists-sync answer, with the instant it is ordered by."""

    at: datetime
    list_id: PydanticObjectId
    item: ListPublic | ListRemoved

    @property
    def key(self) -> tuple[datetime, str]:
        return self.at, str(self.list_id)


async def _list_changes(*, caller: Caller, query: ListQuery, settings: Settings) -> ListChanges:
    since = query.updated_since
    if since is None:
        raise ValueError("not a sync query")
    since = as_utc(since)
    now = utc_now()
    query_fingerprint = fingerprint(
        {"lists_of": str(caller.user_id), "updated_since": since.isoformat()}
    )
    # Fixed by the first page and carried by the cursor: the pages of one answer cover one
    # interval, (since, watermark].
    watermark = max(now - timedelta(milliseconds=settings.sync_lag_ms), since)
    after = None
    # A bad cursor is a 400 whatever `updated_since` is: the request is malformed before it is
    # too old.
    if query.cursor is not None:
        key, extra = _decode(query.cursor, query_fingerprint)
        after = _changes_position(key)
        watermark = _watermark(extra)
    if since < now - timedelta(days=settings.tombstone_retention_days):
        raise Gone(
            f"updated_since is older than the {settings.tombstone_retention_days}-day tombstone "
            "retention: removals may be missing, so do a full resync (list without it)"
        )
    changes = await _changes(caller, since, watermark)
    if after is not None:
        changes = [change for change in changes if change.key > after]
    page = changes[: query.limit]
    next_cursor = None
    if len(changes) > query.limit:
        last = page[-1]
        next_cursor = encode_cursor(
            [_instant_to_json(last.at), str(last.list_id)],
            query_fingerprint,
            {"w": _instant_to_json(watermark)},
        )
    return ListChanges(
        items=[change.item for change in page], next_cursor=next_cursor, watermark=watermark
    )


async def _changes(caller: Caller, since: datetime, until: datetime) -> list[_Change]:
    """Every change in (since, until] of a list for the caller, in order: a list whose `List`
    changed for them (the list, or their membership of it), or one they can no longer read."""

    def within(value: Any) -> datetime | None:
        instant = as_utc(value)
        return instant if since < instant <= until else None

    live: dict[PydanticObjectId, dict[str, Any]] = {}
    changes: list[_Change] = []
    for membership in caller.memberships:
        list_id = PydanticObjectId(membership["list_id"])
        if membership.get("removed_at") is None:
            live[list_id] = dict(membership)
        elif (at := within(membership["removed_at"])) is not None:
            changes.append(_Change(at, list_id, ListRemoved(id=str(list_id))))
    membership_changed = {
        list_id for list_id, membership in live.items() if within(membership["updated_at"])
    }
    found = await store.changed_lists(
        list_ids=list(live), also=list(membership_changed), since=since, until=until
    )
    for stored in found:
        list_id = stored["_id"]
        membership_changed.discard(list_id)
        instants = [
            at
            for at in (within(stored["updated_at"]), within(live[list_id]["updated_at"]))
            if at is not None
        ]
        if not instants:
            continue
        item: ListPublic | ListRemoved
        if stored.get("deleted_at") is not None:
            # Deleted while the caller's membership was still being ended: removed all the same.
            item = ListRemoved(id=str(list_id))
        else:
            role = Role(live[list_id]["role"])
            item = ListPublic.from_stored(stored, caller_id=caller.user_id, role=role)
        changes.append(_Change(max(instants), list_id, item))
    # A live membership of a list no longer stored at all: the list is gone.
    for list_id in membership_changed:
        at = as_utc(live[list_id]["updated_at"])
        changes.append(_Change(at, list_id, ListRemoved(id=str(list_id))))
    return sorted(changes, key=lambda change: change.key)


# ---- cursors ----


def _instant_to_json(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="milliseconds")


def _decode(cursor: str, query_fingerprint: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        return decode_cursor(cursor, query_fingerprint)
    except CursorMismatchError as exc:
        raise BadRequest("This cursor belongs to another query") from exc
    except InvalidCursorError as exc:
        raise BadRequest("Invalid cursor") from exc


def _instant(value: Any) -> datetime:
    """An instant a cursor carries; ValueError unless it is an aware ISO datetime."""
    if not isinstance(value, str):
        raise ValueError(value)
    instant = datetime.fromisoformat(value)
    if instant.tzinfo is None:
        raise ValueError(value)
    return as_utc(instant)


def _page_position(key: list[Any]) -> tuple[int, datetime, PydanticObjectId]:
    """The (rank, created_at, _id) a listing cursor carries; BadRequest if it has none."""
    try:
        rank, created_at, list_id = key
        if type(rank) is not int or rank not in (0, 1) or not isinstance(list_id, str):
            raise ValueError(key)
        return rank, _instant(created_at), PydanticObjectId(list_id)
    except (InvalidId, TypeError, ValueError) as exc:
        raise BadRequest("Invalid cursor") from exc


def _changes_position(key: list[Any]) -> tuple[datetime, str]:
    """The (instant, list id) a lists-sync cursor carries; BadRequest if it has none."""
    try:
        at, list_id = key
        if not isinstance(list_id, str):
            raise ValueError(key)
        return _instant(at), str(PydanticObjectId(list_id))
    except (InvalidId, TypeError, ValueError) as exc:
        raise BadRequest("Invalid cursor") from exc


def _watermark(extra: dict[str, Any]) -> datetime:
    try:
        return _instant(extra["w"])
    except (KeyError, ValueError) as exc:
        raise BadRequest("Invalid cursor") from exc
