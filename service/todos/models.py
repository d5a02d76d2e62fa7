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
    owner_id: PydanticObjectId
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
        # has (owner_id, and deleted_at: null for live todos); docs/database.md says which
        # query each serves (listing.sort_keys gives each listing order; tests/todos/
        # test_listing.py checks that each is served by its index).
        indexes: ClassVar[list[pymongo.IndexModel]] = [
            pymongo.IndexModel(
                [("owner_id", ASC), ("deleted_at", ASC), ("_id", DESC)],
                name="todos_live_by_created",
            ),
            pymongo.IndexModel(
                [("owner_id", ASC), ("deleted_at", ASC), ("updated_at", DESC), ("_id", DESC)],
                name="todos_live_by_updated",
            ),
            pymongo.IndexModel(
                [
                    ("owner_id", ASC),
                    ("deleted_at", ASC),
                    ("due_rank", ASC),
                    ("due_at", ASC),
                    ("_id", ASC),
                ],
                name="todos_live_by_due",
            ),
            pymongo.IndexModel(
                [("owner_id", ASC), ("deleted_at", ASC), ("priority", DESC), ("_id", DESC)],
                name="todos_live_by_priority",
            ),
            # Delta sync with tombstones: everything the owner changed, in update order.
            pymongo.IndexModel(
                [("owner_id", ASC), ("updated_at", ASC), ("_id", ASC)], name="todos_sync"
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
