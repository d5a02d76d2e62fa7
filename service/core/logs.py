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


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Records may carry request_id themselves (the access log, error logs); others get the
        # id of the request being handled when they are formatted.
        if (context := current_request()) is not None:
            entry["request_id"] = context.request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


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
