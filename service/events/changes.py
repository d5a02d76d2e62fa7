"""What a change-stream event means to the readers of each list: the todo events, and the list
events that membership and list changes become.

Pure: nothing here reads the database. The feed (feed.py) decides who gets what; this module
says what a reader who can read a given set of lists is told.

Post-images may be read after later writes (SecantusDB reads them at read time; MongoDB's
`updateLookup` too): the kind of a change comes from the event itself, and a change the
post-image has overtaken (the todo was deleted, or moved on, since) is left to the later
event, which follows with the final state.
"""

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from beanie import PydanticObjectId
from bson import Timestamp
from pydantic import BaseModel

from service.events.schemas import ListEventData, ListRemovedData, MemberEventData
from service.lists.models import Role
from service.todos.schemas import TodoPublic, TodoTombstone

TodoEventKind = Literal["created", "updated", "deleted"]
ListEventKind = Literal[
    "list_created", "list_updated", "list_removed", "member_added", "member_removed"
]


@dataclass(frozen=True, slots=True)
class Change:
    """One todo change, as one reader is told it: kind, resume token, the list it is reported
    under (for a todo that left the reader's view: the list it left) and its JSON data.

    `cluster_time` orders it among the other changes (a resume token's bytes don't, on every
    server): the feed uses it to skip what a client's catch-up already covered.
    """

    kind: TodoEventKind
    token: str
    list_id: PydanticObjectId
    data: dict[str, Any]
    cluster_time: Timestamp | None = None


@dataclass(frozen=True, slots=True)
class ListEvent:
    """A list event (no resume token: it isn't resumable; lists sync is its catch-up)."""

    kind: ListEventKind
    data: dict[str, Any]


def _list_id(value: Any) -> PydanticObjectId | None:
    return None if value is None else PydanticObjectId(value)


@dataclass(eq=False, slots=True)
class TodoEvent:
    """A change-stream event on todos, read once and shown to each reader as their lists allow.

    `list_id` is the list of the post-image (for a deletion: the list it was deleted from).
    A move (its update sets `list_id`) also has `target`, the list this move put it in, and
    `left`, the list it left (`moved_from`, which the move sets).
    """

    kind: TodoEventKind
    token: str
    cluster_time: Timestamp | None
    document: Mapping[str, Any]
    updated: Mapping[str, Any]
    list_id: PydanticObjectId
    target: PydanticObjectId | None = None
    left: PydanticObjectId | None = None
    # Each way of telling it, built once for all the readers who are told it so.
    _told: dict[str, Change] = field(default_factory=dict)

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> "TodoEvent | None":
        """The event's meaning; None for one with nothing to tell anyone."""
        document = event.get("fullDocument")
        if document is None:
            return None  # removed since (a tombstone's TTL): nothing left to report
        if document.get("list_id") is None:
            return None  # from before lists: the startup migration puts it in one
        updated = (event.get("updateDescription") or {}).get("updatedFields") or {}
        token, cluster_time = event["_id"]["_data"], event.get("clusterTime")
        list_id = PydanticObjectId(document["list_id"])
        if updated.get("deleted_at") is not None:
            return cls("deleted", token, cluster_time, document, updated, list_id)
        if event["operationType"] == "replace":
            return cls._replaced(token, cluster_time, document, list_id)
        if document.get("deleted_at") is not None:
            return None  # deleted since: the deletion's own event follows
        if event["operationType"] == "insert":
            return cls("created", token, cluster_time, document, updated, list_id)
        if "list_id" in updated:
            left = _list_id(updated.get("moved_from", document.get("moved_from")))
            target = PydanticObjectId(updated["list_id"])
            return cls("updated", token, cluster_time, document, updated, list_id, target, left)
        return cls("updated", token, cluster_time, document, updated, list_id)

    @classmethod
    def _replaced(
        cls,
        token: str,
        cluster_time: Timestamp | None,
        document: Mapping[str, Any],
        list_id: PydanticObjectId,
    ) -> "TodoEvent":
        """A whole new document, exact as of the change but without an update description:
        MongoDB may log a pipeline update (a move is one) so. It may be the move that set
        `moved_from`, or a later change: its readers who can't read the todo's list are told
        it left theirs, which is at worst a deletion repeated of a todo they don't hold."""
        if document.get("deleted_at") is not None:
            return cls("deleted", token, cluster_time, document, {}, list_id)
        left = _list_id(document.get("moved_from"))
        if left is None or left == list_id:
            return cls("updated", token, cluster_time, document, {}, list_id)
        return cls("updated", token, cluster_time, document, {}, list_id, list_id, left)

    @property
    def lists(self) -> tuple[PydanticObjectId, ...]:
        """The lists whose readers may have something to be told."""
        return (self.list_id,) if self.left is None else (self.list_id, self.left)

    def told(self, readable: Container[PydanticObjectId]) -> Change | None:
        """What a reader of the `readable` lists is told; None if nothing.

        A todo moved out of their view (into a list they can't read) is `deleted` from the
        list it left; moved into it from a list they couldn't read, it is `created`.
        """
        if self.target is None:
            return self._tell(self.kind) if self.list_id in readable else None
        left_readable = self.left is not None and self.left in readable
        if self.target in readable:
            if self.target != self.list_id:
                return None  # moved on since: that move's event tells them
            # From a list they couldn't read: new to them.
            from_elsewhere = self.left is not None and not left_readable
            return self._tell("created" if from_elsewhere else "updated")
        return self._tell("departed") if left_readable else None

    def _tell(self, how: str) -> Change:
        change = self._told.get(how)
        if change is None:
            change = self._build(how)
            self._told[how] = change
        return change

    def _build(self, how: str) -> Change:
        if how == "deleted":
            # The deletion's own deleted_at and version, over a post-image that may be later.
            tombstone = TodoTombstone.from_stored({**self.document, **self.updated})
            return self._change("deleted", self.list_id, tombstone.model_dump(mode="json"))
        if how == "departed" and self.left is not None:  # told only to readers of `left`
            # The move's own version and time; the list it left, never the one it went to.
            departed = TodoTombstone.of_departed({**self.document, **self.updated}, self.left)
            return self._change("deleted", self.left, departed.model_dump(mode="json"))
        kind: TodoEventKind = "created" if how == "created" else "updated"
        # Read as stored (no Todo built and dumped again); from_stored fills in what it lacks.
        data = TodoPublic.from_stored(self.document).model_dump(mode="json")
        return self._change(kind, self.list_id, data)

    def _change(
        self, kind: TodoEventKind, list_id: PydanticObjectId, data: dict[str, Any]
    ) -> Change:
        return Change(kind, self.token, list_id, data, self.cluster_time)


# ---- list events ----


def list_created(document: Mapping[str, Any]) -> ListEvent:
    """To the owner of a new list (its only member), with the list as stored."""
    data = ListEventData(
        id=str(document["_id"]),
        role=Role.OWNER.value,
        is_default=bool(document.get("is_default", False)),
        **{name: document[name] for name in _CREATED_FIELDS if name in document},
    )
    return ListEvent("list_created", _dump(data))


def list_updated(list_id: PydanticObjectId, updated: Mapping[str, Any]) -> ListEvent:
    """To the members of a list whose `List` changed (name, member count, owner), with what
    the update changed."""
    fields = {name: updated[name] for name in _UPDATED_FIELDS if name in updated}
    if "owner_id" in updated:
        fields["owner_id"] = str(updated["owner_id"])
    return ListEvent("list_updated", _dump(ListEventData(id=str(list_id), **fields)))


def role_changed(list_id: PydanticObjectId, role: Role) -> ListEvent:
    """To a member whose role in the list changed."""
    return ListEvent("list_updated", _dump(ListEventData(id=str(list_id), role=role.value)))


def list_removed(list_id: PydanticObjectId) -> ListEvent:
    """To a member who can no longer read the list (left, removed, or the list deleted)."""
    return ListEvent("list_removed", _dump(ListRemovedData(id=str(list_id))))


def member_added(list_id: PydanticObjectId, user_id: PydanticObjectId, role: Role) -> ListEvent:
    """To every member of the list, the new one included."""
    data = MemberEventData(list_id=str(list_id), user_id=str(user_id), role=role.value)
    return ListEvent("member_added", _dump(data))


def member_removed(list_id: PydanticObjectId, user_id: PydanticObjectId) -> ListEvent:
    """To the members who remain (the one who went gets list_removed instead)."""
    data = MemberEventData(list_id=str(list_id), user_id=str(user_id))
    return ListEvent("member_removed", _dump(data))


_UPDATED_FIELDS = ("name", "member_count", "version", "updated_at")
_CREATED_FIELDS = (*_UPDATED_FIELDS, "created_at")


def _dump(data: BaseModel) -> dict[str, Any]:
    """Only the fields the event says something of (an absent one didn't change)."""
    dumped: dict[str, Any] = data.model_dump(mode="json", exclude_none=True)
    return dumped
