"""CPU-bound work in worker threads, a bounded number at once, with a bounded queue.

Work that holds the CPU for tens or hundreds of milliseconds (a password hash, parsing a large
import file) would stall every other request of the worker inside `async def`; unbounded, a
burst of it would take every thread and the memory each one holds. At most `concurrency` run
at once, `queue` more wait, and one more is refused at once (`busy()`, a 503 to the client)
rather than waiting behind the others for seconds.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
import anyio.to_thread

R = TypeVar("R")

# The pool the current request already holds a place in (BoundedThreads.admitted).
_admitted: ContextVar["BoundedThreads | None"] = ContextVar("threads_admitted", default=None)


class BoundedThreads:
    """Runs functions in worker threads: `concurrency` at once, `queue` waiting, `busy()`
    raised for one more."""

    def __init__(self, concurrency: int, queue: int, busy: Callable[[], Exception]) -> None:
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._capacity = concurrency + queue
        self._busy = busy
        # Callers holding a place: running, or on their way to it. Checked and counted with
        # no await in between, so the bound holds under any number of concurrent callers.
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Callers running or waiting to."""
        return self._in_flight

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold a place for as long as the block runs (a caller may hold it over more than the
        thread's work, so that a burst beyond the queue is refused before it costs anything);
        `busy()` if there is none. Nested use (and `run` inside) takes no other."""
        if _admitted.get() is self:
            yield
            return
        if self._in_flight >= self._capacity:
            raise self._busy()
        self._in_flight += 1
        token = _admitted.set(self)
        try:
            yield
        finally:
            _admitted.reset(token)
            self._in_flight -= 1

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """`function(*args)` in a worker thread, once a place and a thread are free."""
        async with self.admitted():
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
