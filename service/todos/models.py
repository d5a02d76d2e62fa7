"""Beanie documents of todos: the todos and their idempotency keys."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import Field

from service.core.clock import utc_now

ASC, DESC = pymongo.ASCENDING, pymongo.DESCENDING


class Todo(Document):
    """A todo, in one list: who may read or change it is the list's business (lists/access)."""

    list_id: PydanticObjectId
    # Who created it: never changes, not by an edit nor by a move.
    created_by: PydanticObjectId
    # The todo's list and every list it was moved out of (multikey): delta sync of a list's
    # members finds here the todos that left it, to report them as tombstones.
    sync_lists: list[PydanticObjectId] = Field(default_factory=list)
    # Set by a move to the list the todo left: the change feed reads it from the update's
    # description, to tell the members of that list that the todo is gone.
    moved_from: PydanticObjectId | None = None
    text: str
    notes: str = ""
    completed: bool = False
    completed_at: datetime | None = None
    # `due` is kept exactly as the client sent it; `due_at` is its instant (for filters and
    # sorting) and `due_rank` is 1 when there is no due, so that "sort=due" puts those last
    # in both directions.
    due: str | None = None
    due_at: datetime | None = None
    due_rank: int = 1
    priority: int = 0
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    version: int = 1
    # Set when the todo is deleted: it stays as a tombstone for delta sync until a TTL index
    # removes it. Every normal read filters on deleted_at: null.
    deleted_at: datetime | None = None

    class Settings:
        name = "todos"
        # One index per listing order, each starting with the equality fields every listing
        # has (list_id, and deleted_at: null for live todos); docs/database.md says which
        # query each serves (listing.sort_keys gives each listing order; tests/todos/
        # test_listing.py checks that each is served by its index). Named anew (todos_list_*):
        # the owner_id indexes of earlier versions keep their names until the migration drops
        # them, and an index whose name exists with other keys can't be created.
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel(
                [("list_id", ASC), ("deleted_at", ASC), ("_id", DESC)],
                name="todos_list_live_by_created",
            ),
            pymongo.IndexModel(
                [("list_id", ASC), ("deleted_at", ASC), ("updated_at", DESC), ("_id", DESC)],
                name="todos_list_live_by_updated",
            ),
            pymongo.IndexModel(
                [
                    ("list_id", ASC),
                    ("deleted_at", ASC),
                    ("due_rank", ASC),
                    ("due_at", ASC),
                    ("_id", ASC),
                ],
                name="todos_list_live_by_due",
            ),
            pymongo.IndexModel(
                [("list_id", ASC), ("deleted_at", ASC), ("priority", DESC), ("_id", DESC)],
                name="todos_list_live_by_priority",
            ),
            # Delta sync with tombstones: everything that changed in, or left, the lists, in
            # update order.
            pymongo.IndexModel(
                [("sync_lists", ASC), ("updated_at", ASC), ("_id", ASC)], name="todos_list_sync"
            ),
        ]


# A stored todo as listings read it: the raw document, without a Todo built around it (that
# cost ~30% more CPU per page; bench/REPORT.md). A field it lacks reads as TODO_DEFAULTS's.
StoredTodo = Mapping[str, Any]
TODO_DEFAULTS: dict[str, Any] = {
    name: field.get_default(call_default_factory=True)
    for name, field in Todo.model_fields.items()
    if not field.is_required()
}


IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 60 * 60


class IdempotencyKey(Document):
    """A create made with an Idempotency-Key: what was asked, and the answer to replay."""

    # The user who sent the key (keys are per user, whichever list the todo went to).
    owner_id: PydanticObjectId
    key: str
    request_hash: str
    # Chosen before the todo is inserted, so a retry after a crash can't create a second one.
    todo_id: PydanticObjectId
    # The created todo as the API returned it; None while the first request is running.
    # Records written by earlier versions also hold `status_code` (always 201) and `location`
    # (always the todo's path): both follow from the todo, so they are no longer written, and
    # reading ignores them.
    response_body: dict[str, Any] | None = None
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "idempotency_keys"
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            # Keys are per user; the unique index is what makes parallel retries safe.
            pymongo.IndexModel(
                [("owner_id", ASC), ("key", ASC)], unique=True, name="idempotency_owner_key"
            ),
            # Sweeps expired keys (about once a minute); expiry is also checked on read.
            pymongo.IndexModel(
                [("created_at", ASC)],
                expireAfterSeconds=IDEMPOTENCY_KEY_TTL_SECONDS,
                name="idempotency_ttl",
            ),
        ]
