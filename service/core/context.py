"""What the service knows about the request being handled, for logs and metrics.

The request middleware (service/core/middleware.py) sets one `RequestContext` per HTTP request in a
context variable; dependencies fill in what they learn (the user id), log lines read it.
"""

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

# Hears what the request changed of who may access what (core/watch.py: changed_here).
AccessListener = Callable[[str, tuple[Any, ...]], None]


@dataclass
class RequestContext:
    request_id: str
    user_id: str | None = None
    access_listener: AccessListener | None = None


_current: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)


def current_request() -> RequestContext | None:
    """The request being handled in this task, if any."""
    return _current.get()


def set_current_request(context: RequestContext | None) -> object:
    """Make `context` current; returns a token for `reset_current_request`."""
    return _current.set(context)


def reset_current_request(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]  # the token set_current_request returned


def bind_user(user_id: str) -> None:
    """Record who the request is from, for its log line."""
    if (context := _current.get()) is not None:
        context.user_id = user_id


def bind_access_listener(listener: AccessListener) -> None:
    """Make `listener` (the worker's authentication cache) hear what this request changes of
    who may access what (core/watch.py: changed_here)."""
    if (context := _current.get()) is not None:
        context.access_listener = listener


def access_listener() -> AccessListener | None:
    """The listener the request bound, if any."""
    context = _current.get()
    return None if context is None else context.access_listener
