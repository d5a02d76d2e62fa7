"""One database time budget per request, shared by all of its database calls.

Every store function is wrapped in `@budgeted`: it runs inside `pymongo.timeout(remaining)`,
and the time it took is taken off the request's budget. A dead database mid-request therefore
costs at most one budget in all, not one timeout per call. Time spent on other work (hashing
a password, say) does not count, so a queue of signups can't run a request out of budget.

The budget is set for every HTTP request by the request middleware (core/middleware.py). A
store function that waits on something other than the database (an idempotent create waiting
for the first request with its key) is marked `@unbudgeted` and runs with the client's own
timeouts only; a test checks that every public store function is one or the other. The change
feed's own tasks start in an empty context, so no request's budget reaches them.
"""

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import ParamSpec, TypeVar

import pymongo
from pymongo.errors import ExecutionTimeout

P = ParamSpec("P")
R = TypeVar("R")

BUDGET_MARKER = "__db_budget__"


class RequestBudget:
    """Seconds of database time a request has left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.remaining = seconds
        self._clock = clock

    @contextmanager
    def spend(self) -> Iterator[float]:
        """Yield the seconds left, and take the time spent inside off the budget."""
        started = self._clock()
        try:
            yield self.remaining
        finally:
            self.remaining -= self._clock() - started


_budget: ContextVar[RequestBudget | None] = ContextVar("request_db_budget", default=None)
# True inside a budgeted call, so that store functions calling each other count once.
_inside: ContextVar[bool] = ContextVar("inside_budgeted_call", default=False)


@contextmanager
def request_budget(seconds: float) -> Iterator[RequestBudget]:
    """Give the database calls made inside (in this task and tasks it starts) `seconds`."""
    budget = RequestBudget(seconds)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def current_budget() -> RequestBudget | None:
    """The budget of the request being handled, if any."""
    return _budget.get()


def start_request_budget(seconds: float) -> Token[RequestBudget | None]:
    """`request_budget` without the context manager, for the request middleware's hot path:
    the budget holds until `end_request_budget(token)`."""
    return _budget.set(RequestBudget(seconds))


def end_request_budget(token: Token[RequestBudget | None]) -> None:
    _budget.reset(token)


def budgeted(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a store function within the current request's database budget (if any)."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        budget = _budget.get()
        if budget is None or _inside.get():
            return await func(*args, **kwargs)
        token = _inside.set(True)
        try:
            with budget.spend() as remaining:
                if remaining <= 0:
                    # pymongo.timeout(0) would mean "no timeout"; the budget is gone.
                    raise ExecutionTimeout("request database budget exhausted", code=50)
                with pymongo.timeout(remaining):
                    return await func(*args, **kwargs)
        finally:
            _inside.reset(token)

    setattr(wrapper, BUDGET_MARKER, True)
    return wrapper


def unbudgeted(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Mark a store call that waits on more than the database, so it runs on no request budget."""
    setattr(func, BUDGET_MARKER, False)
    return func
