"""The MongoDB client, Beanie's initialisation and the list of document models."""

from typing import Any

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from service.config import Settings
from service.models import EventTicket, IdempotencyKey, Session, ThrottleCounter, Todo, User

DOCUMENT_MODELS: list[type[Document]] = [
    User,
    Todo,
    Session,
    ThrottleCounter,
    IdempotencyKey,
    EventTicket,
]

MongoDatabase = AsyncDatabase[dict[str, Any]]


def create_client(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """A client for settings.mongodb_url; it connects lazily, on first use."""
    if settings.mongodb_url is None:
        raise RuntimeError("MONGODB_URL is not set")
    return AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,
        appname="todo-service",
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
    )


async def init_db(database: MongoDatabase) -> None:
    """Bind the document models to `database` and create their indexes."""
    await init_beanie(database=database, document_models=DOCUMENT_MODELS)


async def supports_transactions(database: MongoDatabase) -> bool:
    """Whether the server runs multi-document transactions (a replica set or mongos)."""
    try:
        hello = await database.command("hello")
    except NotImplementedError:
        # mongomock (the tests' in-process tier) has neither `hello` nor transactions.
        return False
    return "setName" in hello or hello.get("msg") == "isdbgrid"
