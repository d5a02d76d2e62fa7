"""What the service changes at startup in a database written by an earlier version.

Lists (issue 12): users stored before lists get their default list and its owner membership,
and their todos move into it. It runs in the lifespan, before the worker serves, and is:

- idempotent: every step only touches what is still in the old shape (a user without a default
  list, a todo without a list), and a default list's id is its owner's, so making it twice is a
  duplicate key, never a second list;
- safe with several workers at once: they all run it; whatever two of them both do, one of them
  does first and the other's write matches nothing (or is a duplicate, ignored);
- resumable: the steps are ordered so that a crash anywhere leaves a state the next start
  completes, and it is marked done only after its last step.

The queries on the old shape (`users.todo_count`, `todos.owner_id`) are here rather than in
the features' stores: no model has those fields any more, and this module can go as a whole
once every deployment has run it.
"""

import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from service.accounts.models import User
from service.core.store import StoredDocument
from service.db import MongoDatabase
from service.lists import service as lists
from service.lists.models import TodoList
from service.todos.models import IdempotencyKey, Todo

logger = logging.getLogger(__name__)

# One document per migration that completed: later starts skip it with one read by _id.
MIGRATIONS_COLLECTION = "migrations"
LISTS_MIGRATION = "lists"
# Each write touches at most this many documents: a single update of a whole large collection
# could outlast MONGODB_SOCKET_TIMEOUT_MS (the server would go on, the start would fail).
BATCH_SIZE = 1000
# The todos indexes on owner_id that list_id-based ones replaced (todos/models.py).
OWNER_TODO_INDEXES = (
    "todos_live_by_created",
    "todos_live_by_updated",
    "todos_live_by_due",
    "todos_live_by_priority",
    "todos_sync",
)
INDEX_NOT_FOUND = 27

# A todo of an earlier version: owner_id, no list. (`list_id: null` rather than `$exists`: an
# equality, which the list_id indexes serve on SecantusDB too; no todo has a null list_id.)
OLD_TODO: dict[str, Any] = {"list_id": None, "owner_id": {"$exists": True}}
# Into the owner's default list, whose id is the owner's: the same id, no lookup needed.
INTO_DEFAULT_LIST: list[dict[str, Any]] = [
    {"$set": {"list_id": "$owner_id", "created_by": "$owner_id", "sync_lists": ["$owner_id"]}},
    {"$unset": "owner_id"},
]
# Idempotency records keep the answer to replay; answers before lists had no list_id.
OLD_ANSWER: dict[str, Any] = {
    "response_body": {"$ne": None},
    "response_body.list_id": None,
    "owner_id": {"$exists": True},
}
ANSWER_IN_DEFAULT_LIST: list[dict[str, Any]] = [
    {
        "$set": {
            "response_body.list_id": {"$toString": "$owner_id"},
            "response_body.created_by": {"$toString": "$owner_id"},
        }
    }
]


async def migrate(database: MongoDatabase, *, now: datetime) -> None:
    """Run every migration not yet marked done in `database`."""
    done = database[MIGRATIONS_COLLECTION]
    if await done.find_one({"_id": LISTS_MIGRATION}) is not None:
        return
    await migrate_to_lists(database, now=now)
    with contextlib.suppress(DuplicateKeyError):  # another worker finished it too
        await done.insert_one({"_id": LISTS_MIGRATION, "completed_at": now})


async def migrate_to_lists(database: MongoDatabase, *, now: datetime) -> None:
    """Lists (issue 12), in an order a crash can stop anywhere:

    1. every user without a default list gets one, counting their live todos, then loses the
       old per-user `todo_count` (a user who has one is not picked again);
    2. todos without a list move into their owner's default list (by the owner's id, so this
       needs nothing from step 1 but its lists to exist, which it finished first);
    3. idempotency records' answers gain the list_id and created_by a create now answers;
    4. the old owner_id indexes of todos are dropped (step 1 counted by owner_id with them).
    """
    users = await give_users_default_lists(database, now=now)
    todos = await _update_in_batches(database[Todo.Settings.name], OLD_TODO, INTO_DEFAULT_LIST)
    await _update_in_batches(
        database[IdempotencyKey.Settings.name], OLD_ANSWER, ANSWER_IN_DEFAULT_LIST
    )
    dropped = await drop_owner_todo_indexes(database)
    if users or todos or dropped:
        logger.info(
            "lists migration: %d users given a default list, %d todos moved into one, "
            "%d old todo indexes dropped",
            users,
            todos,
            len(dropped),
        )


async def give_users_default_lists(database: MongoDatabase, *, now: datetime) -> int:
    """Step 1: a default list (and owner membership) for every user without one; how many.

    Users are picked by the absence of their default list (its id is theirs), not by the old
    `todo_count`: users stored before that counter existed have none, and need a list too.
    """
    users = database[User.Settings.name]
    without_list: list[dict[str, Any]] = [
        {
            "$lookup": {
                "from": TodoList.Settings.name,
                "localField": "_id",
                "foreignField": "_id",
                "as": "default_list",
            }
        },
        {"$match": {"default_list": {"$size": 0}}},
        {"$project": {"created_at": 1}},
    ]
    given = 0
    batch: list[StoredDocument] = []
    async for user in await users.aggregate(without_list, batchSize=BATCH_SIZE):
        batch.append(user)
        if len(batch) == BATCH_SIZE:
            given += await _give_default_lists(database, batch, now=now)
            batch = []
    if batch:
        given += await _give_default_lists(database, batch, now=now)
    # Only once every user has a list: the counter now lives on it.
    await _update_in_batches(
        users, {"todo_count": {"$exists": True}}, {"$unset": {"todo_count": ""}}
    )
    return given


async def _give_default_lists(
    database: MongoDatabase, users: list[StoredDocument], *, now: datetime
) -> int:
    """Default lists for these users, each counting its owner's live todos (they are all about
    to move into it), made when the user was (`now` for a user stored without created_at).
    Counted rather than copied from `users.todo_count`: exact even where the old counter was
    one high after a crash, or missing."""
    ids = [user["_id"] for user in users]
    counts = {
        counted["_id"]: counted["todos"]
        async for counted in await database[Todo.Settings.name].aggregate(
            [
                {"$match": {"owner_id": {"$in": ids}, "deleted_at": None}},
                {"$group": {"_id": "$owner_id", "todos": {"$sum": 1}}},
            ]
        )
    }
    await lists.create_default_lists(
        owners=[
            lists.DefaultListOwner(
                user_id=PydanticObjectId(user["_id"]),
                todo_count=counts.get(user["_id"], 0),
                created_at=user.get("created_at") or now,
            )
            for user in users
        ]
    )
    return len(users)


async def _update_in_batches(
    collection: AsyncCollection[StoredDocument],
    query: Mapping[str, Any],
    update: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> int:
    """Apply `update` to every document matching `query`, BATCH_SIZE at a time; how many this
    call changed. `update` must make a document stop matching `query`: each batch is the
    first documents that still match (another worker's batch, done first, drops out)."""
    changed = 0
    while True:
        batch = await collection.find(query, {"_id": 1}).limit(BATCH_SIZE).to_list(None)
        if not batch:
            return changed
        result = await collection.update_many(
            {**query, "_id": {"$in": [document["_id"] for document in batch]}}, update
        )
        changed += result.modified_count


async def drop_owner_todo_indexes(database: MongoDatabase) -> list[str]:
    """Step 4: drop the todos indexes on owner_id that are still there; their names."""
    todos = database[Todo.Settings.name]
    indexes = await todos.index_information()
    dropped = []
    for name in OWNER_TODO_INDEXES:
        # By name and key: an index of today's models is never dropped, whatever its name.
        keys = [field for field, _ in indexes.get(name, {}).get("key", [])]
        if "owner_id" not in keys:
            continue
        try:
            await todos.drop_index(name)
        except OperationFailure as exc:
            if exc.code != INDEX_NOT_FOUND:  # another worker dropped it first
                raise
        dropped.append(name)
    return dropped
