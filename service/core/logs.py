"""JSON log lines, one object per line, each carrying the current request's id."""

import json
import logging
from datetime import UTC, datetime
from typing import Any

from service.core.context import current_request

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


MAX_CACHED_RECORD_SHAPES = 1024
# json.dumps(entry, default=str) builds an encoder per call; this one is built once.
_encode = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, request id, extras."""

    def __init__(self) -> None:
        super().__init__()
        # The time up to the second, for the second it was made: every request logs a line,
        # and formatting a datetime costs more than the rest of the line.
        # One tuple, replaced whole: records may be formatted on several threads.
        self._second: tuple[int, str] = (-1, "")
        # A record's attribute names (in order) -> those of them that were extras: records
        # from one call site have the same names, so the filtering is done once per site.
        self._extras: dict[tuple[str, ...], list[str]] = {}

    def _time(self, created: float) -> str:
        """`created` as ISO 8601 in UTC to the millisecond, e.g. 2026-11-25T09:12:01.123+00:00."""
        second = int(created)
        # Rounded to the microsecond first, as datetime.fromtimestamp does.
        micros = round((created - second) * 1e6)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        cached = self._second
        if cached[0] != second:
            moment = datetime.fromtimestamp(second, UTC).isoformat()
            cached = self._second = (second, moment.removesuffix("+00:00"))
        return f"{cached[1]}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Records may carry request_id themselves (the access log, error logs); others get the
        # id of the request being handled when they are formatted.
        if (context := current_request()) is not None:
            entry["request_id"] = context.request_id
        attributes = record.__dict__
        names = tuple(attributes)
        extras = self._extras.get(names)
        if extras is None:
            if len(self._extras) >= MAX_CACHED_RECORD_SHAPES:
                self._extras.clear()
            extras = [
                key for key in names if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
            ]
            self._extras[names] = extras
        for key in extras:
            entry[key] = attributes[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


def request_extra() -> dict[str, str]:
    """`extra=` for a log call about the current request: its id, when there is one."""
    context = current_request()
    return {"request_id": context.request_id} if context is not None else {}


def configure_logging(level: str) -> None:
    """Send every log record (the service's, uvicorn's, pymongo's) to stderr as JSON."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's own handlers would print a second, plain-text copy.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # The request middleware writes one line per request (service.access, route template only).
    # uvicorn writes its access line whenever "uvicorn.access" has a handler, its root's
    # included, and that line carries the raw query string: it must reach no handler at all,
    # whichever way uvicorn was started (this runs in every worker, after uvicorn's own setup).
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
