"""The MongoDB client, Beanie's initialisation and the list of document models."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pymongo
from beanie import Document, init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from pymongo.monitoring import CommandListener

from service.accounts.models import Session, ThrottleCounter, User
from service.config import Settings
from service.core.store import ensure_ttl_index
from service.events.models import EventTicket, FeedStreamSlot
from service.invitations.models import Invitation
from service.lists.models import Membership, TodoList
from service.todos.models import IdempotencyKey, Todo

DOCUMENT_MODELS: list[type[Document]] = [
    User,
    Todo,
    Session,
    ThrottleCounter,
    IdempotencyKey,
    EventTicket,
    FeedStreamSlot,
    TodoList,
    Membership,
    Invitation,
]

MongoDatabase = AsyncDatabase[dict[str, Any]]

logger = logging.getLogger(__name__)

# Startup retries wait 0.25 s, 0.5 s, 1 s, ... up to this long between two pings.
MAX_STARTUP_BACKOFF_SECONDS = 5.0
STARTUP_PING_SECONDS = 1.0


class DatabaseUnreachableError(RuntimeError):
    """The database did not answer within MONGODB_STARTUP_TIMEOUT."""


def create_client(
    settings: Settings, *, event_listeners: list[CommandListener] | None = None
) -> AsyncMongoClient[dict[str, Any]]:
    """A client for settings.mongodb_url; it connects lazily, on first use.

    Requests run inside `pymongo.timeout()` (service/core/budget.py), which replaces the server
    selection and socket timeouts for them; these still bound everything else.
    """
    if settings.mongodb_url is None:
        raise RuntimeError("MONGODB_URL is not set")
    return AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,
        appname="todo-service",
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_connect_timeout_ms,
        socketTimeoutMS=settings.mongodb_socket_timeout_ms,
        # Acknowledged means on a majority of nodes and in their journals: a crash right
        # after a 201 loses nothing.
        w=settings.write_concern,
        journal=settings.mongodb_journal,
        event_listeners=event_listeners or [],
    )


async def init_db(database: MongoDatabase) -> None:
    """Bind the document models to `database` and create their indexes."""
    await init_beanie(database=database, document_models=DOCUMENT_MODELS)


@dataclass(frozen=True, slots=True)
class TTLIndex:
    """An index that init_db can't make: its expiry is a setting (a Beanie model's indexes are
    fixed when the class is defined)."""

    collection: str
    name: str
    field: str


# Every index made at startup beyond the models' (app.py, after the migration); `check`
# compares the database with this same list. Tombstones (deleted todos and lists, ended
# memberships) are kept TOMBSTONE_RETENTION_DAYS for sync, then removed by these; ended
# memberships are read with every session, so they must not pile up.
SETTING_INDEXES = (
    TTLIndex(Todo.Settings.name, "todos_tombstone_ttl", "deleted_at"),
    TTLIndex(TodoList.Settings.name, "lists_tombstone_ttl", "deleted_at"),
    TTLIndex(Membership.Settings.name, "memberships_tombstone_ttl", "removed_at"),
)


def setting_index_expiry(settings: Settings) -> timedelta:
    """How long after its field's instant a SETTING_INDEXES index removes a document."""
    return timedelta(days=settings.tombstone_retention_days)


async def ensure_setting_indexes(database: MongoDatabase, settings: Settings) -> None:
    """Create SETTING_INDEXES, or retune those whose expiry the settings changed."""
    after = setting_index_expiry(settings)
    for index in SETTING_INDEXES:
        await ensure_ttl_index(
            database[index.collection], name=index.name, field=index.field, after=after
        )


async def supports_transactions(database: MongoDatabase) -> bool:
    """Whether the server runs multi-document transactions (a replica set or mongos)."""
    hello = await database.command("hello")
    return "setName" in hello or hello.get("msg") == "isdbgrid"


async def wait_for_database(
    database: MongoDatabase,
    *,
    give_up_after: float,
    ping_timeout: float = STARTUP_PING_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Ping until the database answers, backing off; DatabaseUnreachableError after that long."""
    deadline = clock() + give_up_after
    delay = 0.25
    attempts = 0
    while True:
        attempts += 1
        try:
            with pymongo.timeout(ping_timeout):
                await database.command("ping")
        except PyMongoError as exc:
            left = deadline - clock()
            if left <= 0:
                raise DatabaseUnreachableError(
                    f"MongoDB did not answer within MONGODB_STARTUP_TIMEOUT={give_up_after:g} s "
                    f"({attempts} attempts, last error: {type(exc).__name__}); giving up"
                ) from exc
            logger.info("MongoDB not reachable yet (%s); retrying", type(exc).__name__)
            await sleep(min(delay, left))
            delay = min(delay * 2, MAX_STARTUP_BACKOFF_SECONDS)
        else:
            return
