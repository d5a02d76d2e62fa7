"""Opaque page cursors: the position after which the next page starts."""

import base64
import re

from beanie import PydanticObjectId
from bson import ObjectId

# The 12 bytes of an ObjectId in base64url: exactly 16 characters, no padding.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{16}$"
_CURSOR_RE = re.compile(CURSOR_PATTERN)


class InvalidCursorError(ValueError):
    """The cursor was not made by this service."""


def encode_cursor(last_id: ObjectId) -> str:
    """The cursor for the page after the item `last_id`."""
    return base64.urlsafe_b64encode(last_id.binary).decode("ascii")


def decode_cursor(cursor: str) -> PydanticObjectId:
    """The id a cursor points after, or InvalidCursorError."""
    if not _CURSOR_RE.fullmatch(cursor):
        raise InvalidCursorError(cursor)
    return PydanticObjectId(base64.urlsafe_b64decode(cursor))
