"""List use cases of more than one query, and what other features call."""

from collections.abc import Iterable, Mapping
from typing import Any

from beanie import PydanticObjectId

from service.lists import store

# Called by accounts at signup: every user has a default list from the start.
create_default_list = store.create_default_list
# Called by todos: MAX_TODOS_PER_LIST is a slot taken on the list before a todo is inserted
# (or moved in), given back when one is deleted (or moved out).
reserve_todo_slot = store.reserve_todo_slot
release_todo_slots = store.release_todo_slots
# Called by invitations when one is accepted.
add_member = store.add_member


# ---- for the change feed (events); added by the feed helper, other helpers append too ----


def readable_lists(memberships: Iterable[Mapping[str, Any]]) -> set[PydanticObjectId]:
    """The lists that a user's memberships (as stored: read with their session through
    lists.deps.MEMBERSHIPS) let them read: the live ones."""
    return {
        PydanticObjectId(membership["list_id"])
        for membership in memberships
        if membership.get("removed_at") is None
    }


# The list, user and role of a membership by its id (the feed, when a membership changes).
membership_by_id = store.membership_by_id
