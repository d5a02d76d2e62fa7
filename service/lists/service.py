"""List use cases of more than one query, and what other features call."""

from typing import Any

from beanie import PydanticObjectId

from service.lists import store
from service.lists.models import Role

# Called by accounts at signup: every user has a default list from the start.
create_default_list = store.create_default_list
# Called by todos: MAX_TODOS_PER_LIST is a slot taken on the list before a todo is inserted
# (or moved in), given back when one is deleted (or moved out).
reserve_todo_slot = store.reserve_todo_slot
release_todo_slots = store.release_todo_slots
# Called by invitations when one is accepted.
add_member = store.add_member


# ---- For invitations (issue 12, written with the invitations feature) ----------------------
# MAX_PENDING_INVITATIONS: a slot per pending invitation, taken on the list (store.py).
reserve_invitation_slot = store.reserve_invitation_slot
release_invitation_slot = store.release_invitation_slot
# "Inviting an existing member is a 409", checked among the list's members only.
has_member_with_email = store.has_member_with_email


async def list_view(
    *, list_id: PydanticObjectId, user_id: PydanticObjectId, role: Role
) -> dict[str, Any] | None:
    """The list as `user_id` (whose role in it is `role`) sees it: the fields of the API's
    `List`; None if the list is gone. (Until lists' own List view is merged: the lead may
    replace this with it.)"""
    stored = await store.read_list_view(list_id=list_id)
    if stored is None:
        return None
    owner = stored["owner"]
    return {
        "id": str(stored["_id"]),
        "name": stored["name"],
        # A default list is default only to its owner.
        "is_default": stored.get("is_default", False) and stored["owner_id"] == user_id,
        "role": role,
        "owner": {"id": str(owner["_id"]), "fname": owner["fname"], "lname": owner["lname"]},
        "member_count": stored["member_count"],
        "created_at": stored["created_at"],
        "updated_at": stored["updated_at"],
        "version": stored["version"],
    }
