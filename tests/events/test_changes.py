"""What each change-stream event tells the readers of each list (events/changes.py)."""

from datetime import UTC, datetime
from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import Timestamp

from service.events import changes
from service.events.changes import TodoEvent
from service.lists.models import Role

CREATOR = PydanticObjectId()
SHARED, PRIVATE, ELSEWHERE = PydanticObjectId(), PydanticObjectId(), PydanticObjectId()
TODO_ID = PydanticObjectId()
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def document(**fields: Any) -> dict[str, Any]:
    return {
        "_id": TODO_ID,
        "list_id": SHARED,
        "created_by": CREATOR,
        "sync_lists": [SHARED],
        "text": "t",
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }


def event(
    operation: str, full: dict[str, Any] | None, updated: dict[str, Any] | None = None
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "_id": {"_data": "8200AB"},
        "operationType": operation,
        "clusterTime": Timestamp(1_800_000_000, 7),
        "fullDocument": full,
        "documentKey": {"_id": TODO_ID},
    }
    if updated is not None:
        raw["updateDescription"] = {"updatedFields": updated, "removedFields": []}
    return raw


def read(raw: dict[str, Any]) -> TodoEvent:
    todo_event = TodoEvent.of(raw)
    assert todo_event is not None
    return todo_event


def test_an_insert_is_created_for_the_readers_of_its_list_only() -> None:
    todo_event = read(event("insert", document()))
    change = todo_event.told({SHARED})
    assert change is not None
    assert (change.kind, change.token, change.list_id) == ("created", "8200AB", SHARED)
    assert change.cluster_time == Timestamp(1_800_000_000, 7)
    assert change.data["id"] == str(TODO_ID)
    assert change.data["list_id"] == str(SHARED)
    assert change.data["created_by"] == str(CREATOR)
    assert todo_event.told({PRIVATE}) is None
    assert todo_event.told(set()) is None


def test_every_reader_is_told_the_same_change_built_once() -> None:
    todo_event = read(event("update", document(version=2), {"text": "t", "version": 2}))
    first, second = todo_event.told({SHARED}), todo_event.told({SHARED, PRIVATE})
    assert first is not None
    assert first.kind == "updated"
    assert first is second


def test_a_deletion_is_the_exact_tombstone_with_its_list() -> None:
    # The post-image is read later and may show a newer version; the event's own fields win.
    full = document(version=5, deleted_at=NOW)
    todo_event = read(event("update", full, {"deleted_at": NOW, "version": 3}))
    change = todo_event.told({SHARED})
    assert change is not None
    assert (change.kind, change.list_id) == ("deleted", SHARED)
    assert change.data == {
        "id": str(TODO_ID),
        "list_id": str(SHARED),
        "created_by": str(CREATOR),
        "deleted": True,
        "deleted_at": "2026-11-25T09:00:00Z",
        "version": 3,
    }
    assert todo_event.told({PRIVATE}) is None


def test_a_change_whose_todo_was_deleted_since_is_left_to_the_deletion_event() -> None:
    full = document(version=3, deleted_at=NOW)
    assert TodoEvent.of(event("update", full, {"notes": "x", "version": 2})) is None
    assert TodoEvent.of(event("insert", full)) is None


def test_a_change_whose_todo_is_gone_entirely_is_skipped() -> None:
    assert TodoEvent.of(event("update", None, {"notes": "x"})) is None


def test_a_todo_without_a_list_is_skipped() -> None:
    # Written before lists existed, not yet moved into its owner's default list.
    legacy = document()
    del legacy["list_id"]
    assert TodoEvent.of(event("update", legacy, {"text": "t"})) is None


def move(full: dict[str, Any], *, to: PydanticObjectId, left: PydanticObjectId) -> TodoEvent:
    updated = {"list_id": to, "moved_from": left, "version": 2, "updated_at": LATER}
    return read(event("update", full, updated))


def test_a_todo_moved_out_of_your_view_is_deleted_from_the_list_it_left() -> None:
    todo_event = move(document(list_id=PRIVATE, version=2), to=PRIVATE, left=SHARED)
    change = todo_event.told({SHARED})
    assert change is not None
    assert (change.kind, change.list_id) == ("deleted", SHARED)
    # Never the list it went to; the move's own version and time.
    assert change.data == {
        "id": str(TODO_ID),
        "list_id": str(SHARED),
        "created_by": str(CREATOR),
        "deleted": True,
        "deleted_at": "2026-11-25T10:00:00Z",
        "version": 2,
    }


def test_a_todo_moved_into_your_view_is_created() -> None:
    todo_event = move(document(list_id=SHARED, version=2), to=SHARED, left=PRIVATE)
    change = todo_event.told({SHARED})
    assert change is not None
    assert (change.kind, change.list_id) == ("created", SHARED)
    assert change.data["list_id"] == str(SHARED)


def test_a_todo_moved_between_two_lists_you_read_is_updated() -> None:
    todo_event = move(document(list_id=PRIVATE, version=2), to=PRIVATE, left=SHARED)
    change = todo_event.told({SHARED, PRIVATE})
    assert change is not None
    assert (change.kind, change.list_id) == ("updated", PRIVATE)
    assert todo_event.told({ELSEWHERE}) is None


def test_a_move_the_todo_has_moved_on_from_is_left_to_the_next_move() -> None:
    # Moved SHARED -> PRIVATE, then on to ELSEWHERE before the post-image was read.
    todo_event = move(document(list_id=ELSEWHERE, version=3), to=PRIVATE, left=SHARED)
    # Readers of PRIVATE hear of it from the next move (which left PRIVATE).
    assert todo_event.told({PRIVATE}) is None
    assert todo_event.told({SHARED, PRIVATE}) is None
    # Readers of SHARED only: it left their view with this move.
    departed = todo_event.told({SHARED})
    assert departed is not None
    assert (departed.kind, departed.list_id) == ("deleted", SHARED)
    assert departed.data["version"] == 2
    assert set(todo_event.lists) == {ELSEWHERE, SHARED}


def test_a_move_logged_as_a_replacement_is_told_as_a_move() -> None:
    # MongoDB may log a pipeline update (a move is one) as a whole new document.
    replaced = read(event("replace", document(list_id=PRIVATE, moved_from=SHARED, version=2)))
    departed = replaced.told({SHARED})
    assert departed is not None
    assert (departed.kind, departed.list_id, departed.data["version"]) == ("deleted", SHARED, 2)
    arrived = replaced.told({PRIVATE})
    assert arrived is not None
    assert (arrived.kind, arrived.list_id) == ("created", PRIVATE)
    both = replaced.told({SHARED, PRIVATE})
    assert both is not None
    assert both.kind == "updated"


def test_a_replacement_of_a_todo_never_moved_is_updated() -> None:
    replaced = read(event("replace", document(version=2)))
    change = replaced.told({SHARED})
    assert change is not None
    assert change.kind == "updated"
    assert replaced.told({PRIVATE}) is None


def test_a_replacement_that_deletes_is_the_deletion() -> None:
    # Exact as of the change (not a later post-image): its own tombstone.
    replaced = read(event("replace", document(version=4, deleted_at=NOW)))
    change = replaced.told({SHARED})
    assert change is not None
    assert (change.kind, change.data["version"], change.data["deleted"]) == ("deleted", 4, True)


# ---- list events ----


def test_list_created_carries_the_list_for_its_owner() -> None:
    stored = {
        "_id": SHARED,
        "owner_id": CREATOR,
        "name": "Groceries",
        "is_default": False,
        "member_count": 1,
        "todo_count": 0,
        "created_at": NOW,
        "updated_at": NOW,
        "version": 1,
    }
    told = changes.list_created(stored)
    assert told.kind == "list_created"
    assert told.data == {
        "id": str(SHARED),
        "name": "Groceries",
        "role": "owner",
        "is_default": False,
        "member_count": 1,
        "created_at": "2026-11-25T09:00:00Z",
        "updated_at": "2026-11-25T09:00:00Z",
        "version": 1,
    }


@pytest.mark.parametrize(
    ("updated", "said"),
    [
        ({"name": "Shopping", "version": 2, "updated_at": NOW}, {"name": "Shopping"}),
        ({"member_count": 3, "version": 2, "updated_at": NOW}, {"member_count": 3}),
        ({"owner_id": CREATOR, "version": 2, "updated_at": NOW}, {"owner_id": str(CREATOR)}),
    ],
)
def test_list_updated_says_what_changed_and_nothing_else(
    updated: dict[str, Any], said: dict[str, Any]
) -> None:
    told = changes.list_updated(SHARED, {**updated, "todo_count": 7})
    assert told.kind == "list_updated"
    assert told.data == {
        "id": str(SHARED),
        "version": 2,
        "updated_at": "2026-11-25T09:00:00Z",
        **said,
    }


def test_member_events_name_the_list_and_the_member() -> None:
    member = PydanticObjectId()
    added = changes.member_added(SHARED, member, Role.VIEWER)
    assert (added.kind, added.data) == (
        "member_added",
        {"list_id": str(SHARED), "user_id": str(member), "role": "viewer"},
    )
    removed = changes.member_removed(SHARED, member)
    assert (removed.kind, removed.data) == (
        "member_removed",
        {"list_id": str(SHARED), "user_id": str(member)},
    )
    assert changes.list_removed(SHARED).data == {"id": str(SHARED)}
    assert changes.role_changed(SHARED, Role.EDITOR).data == {
        "id": str(SHARED),
        "role": "editor",
    }
