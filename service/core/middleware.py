"""Pure ASGI middleware: security headers, request ids with logs and metrics, body limits and
the per-request database budget.

Pure ASGI (not BaseHTTPMiddleware) so that streaming responses pass through untouched and
context variables set here are seen by the routes. None of them buffers a response body.
"""

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import metrics
from service.core.budget import request_budget
from service.core.context import RequestContext, reset_current_request, set_current_request
from service.core.routes_table import RouteBodies, RouteMethods
from service.errors import PayloadTooLarge, ServiceError, UnsupportedMediaType

access_logger = logging.getLogger("service.access")
logger = logging.getLogger(__name__)

# What we accept as a caller's X-Request-ID: short and free of anything that could forge
# a log line; anything else is replaced by a generated id.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ROUTE = "<unmatched>"
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # API answers are per user and often authenticated: no cache may keep them. A route that
    # wants caching sets its own Cache-Control, which is left alone.
    "Cache-Control": "no-store",
}


def _error(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code)


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every HTTP response that doesn't set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContextMiddleware:
    """Request id in and out, one JSON log line and metrics per request, JSON 500s.

    `X-Request-ID` is taken from the request if sane, else generated, and returned. The log line
    has the route template (never the raw path or query, which may carry ids or tokens).
    """

    def __init__(
        self,
        app: ASGIApp,
        templates: dict[int, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.templates = templates or {}
        self.clock = clock

    def route_template(self, scope: Scope) -> str:
        """The matched route's full path template (see service/routes_table.py)."""
        route = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        path = self.templates.get(id(route)) or getattr(route, "path", None)
        return path if isinstance(path, str) else UNMATCHED_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else uuid.uuid4().hex
        context = RequestContext(request_id)
        token = set_current_request(context)
        status_code = 500
        started = False
        start = self.clock()

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                started = True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request_id})
            if started:
                raise  # too late for a 500: the server drops the connection
            status_code = 500
            await _error(500, ServiceError.detail)(scope, receive, send_with_id)
        finally:
            seconds = self.clock() - start
            route = self.route_template(scope)
            access_logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "status": status_code,
                    "duration_ms": round(seconds * 1000, 2),
                    "user_id": context.user_id,
                },
            )
            metrics.observe_request(scope["method"], route, status_code, seconds)
            reset_current_request(token)


class MethodNotAllowedMiddleware:
    """405 with `Allow` for a method the path's own routes don't serve, before routing.

    The router tries routes in order, so `PUT /api/todos/clear-completed` would reach
    `PUT /api/todos/{todo_id}` and fail its id pattern (422). A fixed path is its own resource:
    its methods are the most specific templates' (RouteMethods), whatever a `{param}` sibling
    serves.
    """

    def __init__(self, app: ASGIApp, routes: RouteMethods) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = self.routes.allowed(scope["path"])
            if allowed and scope["method"] not in allowed:
                response = method_not_allowed(allowed)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def method_not_allowed(allowed: Iterable[str]) -> JSONResponse:
    """The 405, whose Allow header lists every method of the path."""
    return JSONResponse(
        {"detail": "Method Not Allowed"}, 405, headers={"Allow": ", ".join(sorted(allowed))}
    )


FORM_MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
FORM_EXPECTED = (
    "This endpoint takes a form: send the fields with "
    "Content-Type: application/x-www-form-urlencoded, not JSON"
)


def is_json(media_type: str) -> bool:
    """application/json or application/<anything>+json: what FastAPI parses as JSON."""
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class ContentTypeMiddleware:
    """A request body must come in the type its route takes, before the route runs.

    FastAPI parses a body as JSON only with a JSON content type (strict_content_type) and
    otherwise hands the raw bytes to validation, whose 422 ("Input should be a valid
    dictionary") doesn't say what was wrong; a form route reads a JSON body as an empty form
    ("Field required"). Here, keyed on the body the matched route takes (RouteBodies): a body
    of any other type, or none declared, on a JSON route is a 415; a non-form body on a form
    route is a 422 that says a form is expected. Requests without a body pass untouched.
    """

    def __init__(self, app: ASGIApp, routes: RouteBodies) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in BODYLESS_METHODS:
            headers = Headers(scope=scope)
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            expected = has_body and self.routes.expected(scope["method"], scope["path"])
            if expected:
                media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
                if expected == "json" and not is_json(media_type):
                    response = _error(UnsupportedMediaType.status_code, UnsupportedMediaType.detail)
                    await response(scope, receive, send)
                    return
                if expected == "form" and media_type not in FORM_MEDIA_TYPES:
                    error = {"type": "form_expected", "loc": ["header", "content-type"]}
                    response = JSONResponse({"detail": [{**error, "msg": FORM_EXPECTED}]}, 422)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class RequestBodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit; FastAPI turns it into the 413."""

    def __init__(self) -> None:
        super().__init__(PayloadTooLarge.status_code, PayloadTooLarge.detail)


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`, counted as they stream in.

    A declared Content-Length over the limit is refused before the app runs; otherwise the bytes
    are counted as the app reads them, so a missing or lying Content-Length gets no further.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _error(PayloadTooLarge.status_code, PayloadTooLarge.detail)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestBodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestBodyTooLarge:
            # Only reached if the body was read outside FastAPI's request handling.
            if started:
                raise
            await _error(PayloadTooLarge.status_code, PayloadTooLarge.detail)(scope, receive, send)


class DatabaseBudgetMiddleware:
    """Gives every HTTP request one database time budget (see service/budget.py)."""

    def __init__(self, app: ASGIApp, budget_seconds: float) -> None:
        self.app = app
        self.budget_seconds = budget_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_budget(self.budget_seconds):
            await self.app(scope, receive, send)
