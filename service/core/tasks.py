"""Background tasks of a worker (its change streams): started outside any request, stopped
for sure, their change streams closed quietly."""

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.errors import PyMongoError

logger = logging.getLogger(__name__)

# On stop: how often to repeat the cancellation of a background task.
STOP_POLL_SECONDS = 0.1


def in_empty_context(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A background task in an empty context: no request's settings (its database time
    budget, its request id) leak into it."""
    return asyncio.create_task(coroutine, context=contextvars.Context())


async def close_quietly(stream: AsyncChangeStream[dict[str, Any]] | None) -> None:
    """Close a change stream, if any; a failure to (the database is down, say) is ignored."""
    if stream is not None:
        with contextlib.suppress(PyMongoError):
            await stream.close()


async def cancel_until_done(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for them to end, cancelling again for as long as any runs.

    One cancellation can get lost inside pymongo: on Python 3.11, asyncio.wait_for (which
    pymongo uses to send a command and in its server selection loop) swallows a cancellation
    that arrives just as what it waits for completes. With the database down, the command then
    fails, a stream loop takes that for a failed stream and resumes: the task would run, and a
    shutdown waiting for it, forever. If the caller is itself cancelled meanwhile, the tasks
    are still seen to their end first: left running, they would outlive the app.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    interrupted: asyncio.CancelledError | None = None
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=STOP_POLL_SECONDS)
        except asyncio.CancelledError as exc:
            interrupted = exc
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("background task %s had failed", task.get_name(), exc_info=error)
    if interrupted is not None:
        raise interrupted
