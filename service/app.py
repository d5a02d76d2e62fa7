"""The application factory and its lifespan."""

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypedDict

import pymongo
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from service.accounts import store as account_store
from service.accounts.cache import AuthCache
from service.accounts.models import Session
from service.accounts.passwords import PasswordHasher
from service.accounts.routes import auth_router, sessions_router, users_router
from service.accounts.tokens import TokenSettings
from service.config import Settings
from service.core.client_ip import IPNetwork
from service.core.clock import Clock, utc_now
from service.core.metrics import metrics_endpoint
from service.core.middleware import RequestMiddleware, method_not_allowed
from service.core.routes_table import route_bodies, route_methods, route_templates
from service.core.schemas import ErrorDetail
from service.core.watch import MAX_AWAIT_MS, AccessWatcher
from service.db import (
    MongoDatabase,
    create_client,
    ensure_setting_indexes,
    init_db,
    wait_for_database,
)
from service.docs import install_docs
from service.errors import (
    RETRY_AFTER_HEADER,
    DatabaseUnavailable,
    PayloadTooLarge,
    UnsupportedMediaType,
    install_error_handlers,
)
from service.events.feed import ChangeFeed
from service.events.routes import router as events_router
from service.events.sse import streams_end_on_exit_signal
from service.health.routes import router as health_router
from service.invitations.routes import router as invitations_router
from service.lists.deps import MEMBERSHIPS
from service.lists.models import Membership, TodoList
from service.lists.routes import router as lists_router
from service.migrations import migrate
from service.todos.models import Todo
from service.todos.routes import router as todos_router
from service.transfer.limits import ExportSlots
from service.transfer.parsing import ImportParser
from service.transfer.routes import IMPORT_ROUTE
from service.transfer.routes import router as transfer_router

logger = logging.getLogger(__name__)

# Routes that never touch the database, so never answer 503.
DATABASE_FREE_PATHS = frozenset({"/api/health"})
CLOSE_TIMEOUT_SECONDS = 1.0
OPENAPI_URL = "/openapi.json"
REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_DETAIL_REF = REF_TEMPLATE.format(model="ErrorDetail")


class AppState(TypedDict):
    """What the lifespan hands to every request (as `request.state`)."""

    settings: Settings
    tokens: TokenSettings
    passwords: PasswordHasher
    clock: Clock
    trusted_proxies: tuple[IPNetwork, ...]
    feed: ChangeFeed
    access: AccessWatcher
    auth_cache: AuthCache
    imports: ImportParser
    exports: ExportSlots


@asynccontextmanager
async def _started(state: AppState, database: MongoDatabase) -> AsyncIterator[None]:
    """What runs on the initialised database: the migration of what earlier versions stored,
    settings-made indexes and the change feed."""
    # Before serving: requests expect today's shape (every user with a default list, every
    # todo in a list). Every worker runs it; see service/migrations.py.
    await migrate(database, now=state["clock"]())
    await ensure_setting_indexes(database, state["settings"])
    if dropped := await account_store.delete_legacy_sessions():
        logger.info("deleted %d sessions from before random session ids", dropped)
    # Per worker process: one change stream on who may access what, which the
    # authentication cache (subscribed when it was made) and the feed share, and the feed's
    # own on todos, shared by every event stream; closed on exit.
    feed, access = state["feed"], state["access"]
    feed.watch_access(
        access,
        sessions=Session.get_pymongo_collection(),
        memberships=Membership.get_pymongo_collection(),
        lists=TodoList.get_pymongo_collection(),
    )
    await access.start(database)
    try:
        await feed.start(Todo.get_pymongo_collection())
        with streams_end_on_exit_signal(feed):
            yield
    finally:
        # Side by side: with the database down, each waits out its own close deadline.
        stopped = await asyncio.gather(feed.stop(), access.stop(), return_exceptions=True)
        for outcome in stopped:
            if isinstance(outcome, BaseException):
                raise outcome


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

    staleness_ms = settings.auth_cache_max_staleness_ms
    # The stream's heartbeat (an empty getMore) well within the bound the cache trusts it by.
    max_await_ms = min(MAX_AWAIT_MS, max(10, staleness_ms // 4)) if staleness_ms else MAX_AWAIT_MS

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[AppState]:
        access = AccessWatcher(max_await_ms=max_await_ms)
        state = AppState(
            settings=settings,
            tokens=tokens,
            passwords=PasswordHasher(
                settings.password_hash_concurrency, queue=settings.password_hash_queue
            ),
            clock=clock,
            trusted_proxies=trusted_proxies,
            feed=ChangeFeed(
                catch_up_limit=settings.feed_catch_up_limit,
                max_streams_per_worker=settings.max_streams_per_worker,
                max_streams_per_user=settings.max_streams_per_user,
            ),
            access=access,
            auth_cache=AuthCache(access, max_staleness_ms=staleness_ms, joins=(MEMBERSHIPS,)),
            imports=ImportParser(),
            exports=ExportSlots(
                per_user=settings.exports_per_user, per_worker=settings.exports_per_worker
            ),
        )
        if database is not None:
            await init_db(database)
            async with _started(state, database):
                yield state
            return
        client = create_client(settings)
        try:
            db = client[settings.mongodb_db]
            await wait_for_database(db, give_up_after=settings.mongodb_startup_timeout)
            await init_db(db)
            logger.info("connected to MongoDB, database %r", settings.mongodb_db)
            async with _started(state, db):
                yield state
        finally:
            # close() ends the server sessions first: with the database down, that would
            # wait a whole server selection timeout.
            with pymongo.timeout(CLOSE_TIMEOUT_SECONDS):
                await client.close()
            logger.info("MongoDB client closed")

    docs = settings.docs_on
    app = FastAPI(
        title="todo-service",
        summary="Sign up, log in with a JWT, and keep your to-do lists.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc are added by install_docs, with assets served from here.
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_URL if docs else None,
        # A redirect to the path without its trailing slash would be absolute, built from the
        # Host header and the scheme uvicorn saw: http:// behind a TLS-terminating proxy.
        # Paths are exact: `/api/todos/` is a 404.
        redirect_slashes=False,
    )
    if docs:
        install_docs(app, openapi_url=OPENAPI_URL)
    install_error_handlers(app)
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _method_not_allowed)
    for router in (
        health_router,
        auth_router,
        users_router,
        # Before todos: /todos/events would otherwise match /todos/{todo_id}.
        events_router,
        todos_router,
        lists_router,
        sessions_router,
        invitations_router,
        transfer_router,
    ):
        app.include_router(router, prefix="/api")
    _document_operational_errors(app)
    if settings.metrics_on:
        app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    cors: Callable[[ASGIApp], ASGIApp] | None = None
    if settings.cors_origins:
        cors = functools.partial(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Location", "X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        RequestMiddleware,
        methods=route_methods(app),
        bodies=route_bodies(app),
        templates=route_templates(app),
        max_body_bytes=settings.max_body_bytes,
        # An export file of IMPORT_MAX_TODOS todos is larger than any other body.
        body_limits={("POST", "/api" + IMPORT_ROUTE): settings.import_max_bytes},
        budget_seconds=settings.request_db_budget_ms / 1000,
        metrics_on=settings.metrics_on,
        # Inside the request id and security headers, which its preflight answers get too,
        # and outside the 405 (a preflight is an OPTIONS no route serves) and the 415.
        wrap_checks=cors,
    )
    return app


async def _method_not_allowed(request: Request, _: Exception) -> JSONResponse:
    """405 whose Allow header lists every method of the path, not just the first route's."""
    return method_not_allowed(route_methods(request.app).allowed(request.url.path))


def _document_operational_errors(app: FastAPI) -> None:
    """List the answers any route can give in OpenAPI: 413 where it takes a body, 503 where
    it needs the database. Done on the generated schema, in one place, so that routes added
    later are covered too."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        error = {
            "content": {"application/json": {"schema": {"$ref": ERROR_DETAIL_REF}}},
        }
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    responses.setdefault(
                        str(PayloadTooLarge.status_code),
                        {"description": PayloadTooLarge.detail, **error},
                    )
                    if "application/json" in operation["requestBody"].get("content", {}):
                        responses.setdefault(
                            str(UnsupportedMediaType.status_code),
                            {"description": UnsupportedMediaType.detail, **error},
                        )
                    # FastAPI's own answer to a body it can't decode at all (not UTF-8, say).
                    responses.setdefault(
                        str(status.HTTP_400_BAD_REQUEST),
                        {"description": "The body could not be parsed", **error},
                    )
                if path not in DATABASE_FREE_PATHS:
                    responses.setdefault(
                        str(DatabaseUnavailable.status_code),
                        {
                            "description": DatabaseUnavailable.detail,
                            **error,
                            "headers": RETRY_AFTER_HEADER,
                        },
                    )
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "ErrorDetail", ErrorDetail.model_json_schema(ref_template=REF_TEMPLATE)
        )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
