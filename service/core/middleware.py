"""The request middleware: one pure ASGI pass for security headers, request ids, the access
log line, metrics, JSON 500s, 405s, content types, the body limit and the database budget.

Pure ASGI (not BaseHTTPMiddleware) so that streaming responses pass through untouched and
context variables set here are seen by the routes; it never buffers a response body. One class
rather than a stack of them because every layer cost a call, a `send` wrapper and its own
parse of the headers, and together they cost as much as FastAPI itself (bench/floor.py).
"""

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import metrics
from service.core.budget import end_request_budget, start_request_budget
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
_SECURITY_RAW = [
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
]
_REQUEST_ID = b"x-request-id"
# Where the checks behind a wrapping middleware (CORS) find what the first pass read.
_HEAD_KEY = "todo_service.request_head"


def _error(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code)


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


class RequestBodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit; FastAPI turns it into the 413."""

    def __init__(self) -> None:
        super().__init__(PayloadTooLarge.status_code, PayloadTooLarge.detail)


class _Head:
    """What the request middleware reads from one request's headers, in one pass over them."""

    __slots__ = ("content_length", "content_type", "has_body")

    def __init__(self, content_length: str | None, content_type: str, has_body: bool) -> None:
        self.content_length = content_length
        self.content_type = content_type
        self.has_body = has_body


def _with_headers(
    headers: Iterable[tuple[bytes, bytes]], request_id: bytes
) -> list[tuple[bytes, bytes]]:
    """The response headers plus X-Request-ID (replacing any) and the security headers a
    route didn't set itself. A new list: a response's own may be sent more than once."""
    result = []
    seen = set()
    placed = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == _REQUEST_ID:
            if not placed:  # where the first one was, as MutableHeaders would
                result.append((_REQUEST_ID, request_id))
                placed = True
            continue
        seen.add(lowered)
        result.append((name, value))
    if not placed:
        result.append((_REQUEST_ID, request_id))
    for name, value in _SECURITY_RAW:
        if name not in seen:
            result.append((name, value))
    return result


class RequestMiddleware:
    """Everything the service does around a request, in one pass:

    1. Request id: `X-Request-ID` from the request if sane, else generated; returned on every
       response (and set as the current `RequestContext` for log lines).
    2. Security headers (SECURITY_HEADERS) on every response that doesn't set them itself,
       errors included.
    3. `wrap_checks` (CORS, optional) runs here: it answers preflights itself, and its headers
       reach the 405/415/413 below.
    4. 405 with `Allow` for a method the path's own routes don't serve, before routing (see
       RouteMethods: `PUT /api/todos/clear-completed` would otherwise reach `{todo_id}`).
    5. A body must come in the type its route takes (RouteBodies): a non-JSON body on a JSON
       route is a 415; a non-form body on a form route a 422 that says a form is expected
       (FastAPI's own answers, "Input should be a valid dictionary", don't say what's wrong).
    6. 413 for a body over `max_body_bytes` (or the route's own limit in `body_limits`, by
       method and path: an import takes more): a declared Content-Length over it before the
       app runs, else counted as the app reads it, so a missing or lying Content-Length gets
       no further.
    7. One database time budget (service/core/budget.py) for the request.
    8. After the response: one JSON access line (`service.access`, the route template, never
       the raw path or query) and the request metrics; an unhandled error is logged and
       answered with a JSON 500 carrying the request id.

    The headers are read once, the route template looked up once, after routing, from
    `scope["route"]` (see service/core/routes_table.py).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        methods: RouteMethods | None = None,
        bodies: RouteBodies | None = None,
        templates: dict[int, str] | None = None,
        max_body_bytes: int,
        body_limits: Mapping[tuple[str, str], int] | None = None,
        budget_seconds: float = 2.0,
        metrics_on: bool = True,
        wrap_checks: Callable[[ASGIApp], ASGIApp] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.methods = methods or RouteMethods(())
        self.bodies = bodies or RouteBodies(())
        self.templates = templates or {}
        self.max_body_bytes = max_body_bytes
        self.body_limits = dict(body_limits or {})
        self.budget_seconds = budget_seconds
        # Without /metrics nobody can read them: observing would be work for nothing.
        self.metrics_on = metrics_on
        self.clock = clock
        self.wrapped = wrap_checks(self._checks_behind_wrapper) if wrap_checks else None

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
        start = self.clock()
        incoming = content_length = content_type = None
        chunked = False
        for name, value in scope["headers"]:
            # The first of each, as starlette's Headers.get.
            if name == b"x-request-id":
                if incoming is None:
                    incoming = value.decode("latin-1")
            elif name == b"content-length":
                if content_length is None:
                    content_length = value.decode("latin-1")
            elif name == b"content-type":
                if content_type is None:
                    content_type = value.decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = True
        if incoming is not None and REQUEST_ID_PATTERN.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = os.urandom(16).hex()
        raw_id = request_id.encode("latin-1")
        has_body = (content_length is not None and content_length != "0") or chunked
        head = _Head(content_length, content_type or "", has_body)
        context = RequestContext(request_id)
        token = set_current_request(context)
        status_code = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code, started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                started = True
                message["headers"] = _with_headers(message.get("headers", ()), raw_id)
            await send(message)

        try:
            if self.wrapped is None:
                await self._checks(scope, receive, send_with_headers, head)
            else:
                scope[_HEAD_KEY] = head
                await self.wrapped(scope, receive, send_with_headers)
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request_id})
            if started:
                raise  # too late for a 500: the server drops the connection
            status_code = 500
            await _error(500, ServiceError.detail)(scope, receive, send_with_headers)
        finally:
            seconds = self.clock() - start
            route = self.route_template(scope)
            if access_logger.isEnabledFor(logging.INFO):
                _log_access(scope["method"], route, status_code, seconds, context)
            if self.metrics_on:
                metrics.observe_request(scope["method"], route, status_code, seconds)
            reset_current_request(token)

    async def _checks_behind_wrapper(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._checks(scope, receive, send, scope[_HEAD_KEY])

    async def _checks(self, scope: Scope, receive: Receive, send: Send, head: _Head) -> None:
        """405, 415/422 and 413 before the app runs, then the app on its body limit and budget."""
        method = scope["method"]
        allowed = self.methods.allowed(scope["path"])
        if allowed and method not in allowed:
            await method_not_allowed(allowed)(scope, receive, send)
            return
        if head.has_body and method not in BODYLESS_METHODS:
            expected = self.bodies.expected(method, scope["path"])
            if expected:
                media_type = head.content_type.partition(";")[0].strip().lower()
                if expected == "json" and not is_json(media_type):
                    response = _error(UnsupportedMediaType.status_code, UnsupportedMediaType.detail)
                    await response(scope, receive, send)
                    return
                if expected == "form" and media_type not in FORM_MEDIA_TYPES:
                    error = {"type": "form_expected", "loc": ["header", "content-type"]}
                    response = JSONResponse({"detail": [{**error, "msg": FORM_EXPECTED}]}, 422)
                    await response(scope, receive, send)
                    return
        max_bytes = self.body_limits.get((method, scope["path"]), self.max_body_bytes)
        declared = head.content_length or ""
        if declared.isdigit() and int(declared) > max_bytes:
            await _error(PayloadTooLarge.status_code, PayloadTooLarge.detail)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise RequestBodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        budget = start_request_budget(self.budget_seconds)
        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestBodyTooLarge:
            # Only reached if the body was read outside FastAPI's request handling.
            if started:
                raise
            await _error(PayloadTooLarge.status_code, PayloadTooLarge.detail)(scope, receive, send)
        finally:
            end_request_budget(budget)


def _log_access(
    method: str, route: str, status: int, seconds: float, context: RequestContext
) -> None:
    """The access line, made as `access_logger.info("request", extra=...)` would make it but
    without looking up the caller's source line, which every handler here ignores."""
    record = access_logger.makeRecord(
        access_logger.name,
        logging.INFO,
        __file__,
        0,
        "request",
        (),
        None,
        None,
        {
            "request_id": context.request_id,
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "user_id": context.user_id,
        },
    )
    access_logger.handle(record)
