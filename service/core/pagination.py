"""Opaque page cursors: where the next page starts, bound to the query that made them.

A cursor is base64url (no padding) of a small JSON object: the sort key of the last item of
the page (`k`), a fingerprint of the owner, filters and sort it was made for (`f`), and any
extra values the query pins across pages (`x`). A cursor replayed with another query, or not
made by this service at all, is rejected.
"""

import base64
import binascii
import hashlib
import json
import re
from typing import Any

CURSOR_MAX_LENGTH = 1024
CURSOR_PATTERN = rf"^[A-Za-z0-9_-]{{1,{CURSOR_MAX_LENGTH}}}$"
_CURSOR_RE = re.compile(CURSOR_PATTERN)


class InvalidCursorError(ValueError):
    """The cursor was not made by this service."""


class CursorMismatchError(InvalidCursorError):
    """The cursor was made for other filters, another sort or another user."""


def fingerprint(query: dict[str, Any]) -> str:
    """A short digest of everything that decides a listing's order and contents."""
    canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:22]


def encode_cursor(
    key: list[Any], query_fingerprint: str, extra: dict[str, Any] | None = None
) -> str:
    """The cursor for the page after the item whose (JSON-ready) sort key is `key`."""
    payload: dict[str, Any] = {"k": key, "f": query_fingerprint}
    if extra:
        payload["x"] = extra
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, query_fingerprint: str) -> tuple[list[Any], dict[str, Any]]:
    """The sort key and extra values of a cursor made for this query, or InvalidCursorError."""
    if not _CURSOR_RE.fullmatch(cursor):
        raise InvalidCursorError(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursorError(cursor) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), list):
        raise InvalidCursorError(cursor)
    extra = payload.get("x", {})
    if not isinstance(extra, dict):
        raise InvalidCursorError(cursor)
    if payload.get("f") != query_fingerprint:
        raise CursorMismatchError(cursor)
    return payload["k"], extra
