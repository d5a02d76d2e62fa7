"""The application factory and its lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypedDict

from fastapi import FastAPI

from service import crud
from service.api.router import api_router
from service.client_ip import IPNetwork
from service.config import Settings
from service.db import MongoDatabase, create_client, init_db
from service.exceptions import install_error_handlers
from service.feed import ChangeFeed, redact_tickets_in_access_log
from service.models import Clock, Todo, utc_now
from service.security import PasswordHasher, TokenSettings

logger = logging.getLogger(__name__)


class AppState(TypedDict):
    """What the lifespan hands to every request (as `request.state`)."""

    settings: Settings
    tokens: TokenSettings
    passwords: PasswordHasher
    clock: Clock
    trusted_proxies: tuple[IPNetwork, ...]
    feed: ChangeFeed


async def _ensure_setting_indexes(settings: Settings) -> None:
    """Indexes whose options come from settings (Beanie's can't)."""
    await crud.todos.ensure_tombstone_ttl(
        retention=timedelta(days=settings.tombstone_retention_days)
    )


@asynccontextmanager
async def _started(state: AppState) -> AsyncIterator[None]:
    """What runs on the initialised database: settings-made indexes and the change feed."""
    await _ensure_setting_indexes(state["settings"])
    redact_tickets_in_access_log()
    # One change stream per worker process, shared by every event stream; closed on exit.
    await state["feed"].start(Todo.get_pymongo_collection())
    try:
        yield
    finally:
        await state["feed"].stop()


def create_app(
    settings: Settings, *, database: MongoDatabase | None = None, clock: Clock = utc_now
) -> FastAPI:
    """Build the app. `database`, if given, is used as is (and not closed): tests pass one.

    `clock` dates sessions and throttling windows; tests pass one they can move forward.
    """
    trusted_proxies = settings.trusted_proxy_networks()
    tokens = TokenSettings(
        key=settings.signing_key(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        expires=timedelta(minutes=settings.access_token_expire_minutes),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[AppState]:
        state = AppState(
            settings=settings,
            tokens=tokens,
            passwords=PasswordHasher(settings.password_hash_concurrency),
            clock=clock,
            trusted_proxies=trusted_proxies,
            feed=ChangeFeed(catch_up_limit=settings.feed_catch_up_limit),
        )
        if database is not None:
            await init_db(database)
            async with _started(state):
                yield state
            return
        client = create_client(settings)
        try:
            await init_db(client[settings.mongodb_db])
            logger.info("connected to MongoDB, database %r", settings.mongodb_db)
            async with _started(state):
                yield state
        finally:
            await client.close()

    app = FastAPI(
        title="todo-service",
        summary="Sign up, log in with a JWT, and keep your to-do lists.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(api_router, prefix="/api")
    return app
