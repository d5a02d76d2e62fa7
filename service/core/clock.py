"""The clock stored timestamps come from, and UTC normalisation."""

from collections.abc import Callable
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, truncated to MongoDB's millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# What stored timestamps are taken from; injectable, so that tests move time instead of sleeping.
Clock = Callable[[], datetime]


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value is taken as UTC (what MongoDB stores)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
