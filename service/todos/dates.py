"""Due values and instants: what a todo's dates accept, and their UTC instants."""

import re
from datetime import UTC, date, datetime

# A due value is either a calendar date or a datetime with an explicit offset (never naive).
# The patterns say exactly what is accepted (ASCII digits, real calendar days, leap years), so
# that any value matching the documented schema is taken: years 0001-9999, hours 00-23,
# minutes and seconds 00-59 (no leap second), at most 6 fractional digits, offsets up to
# +-23:59. Every datetime must also be an instant Python (and so MongoDB, here) can hold,
# 0001-01-01T00:00Z to 9999-12-31T23:59:59.999999Z: only a time on the first or last of those
# days could fall outside with an offset, so on those two days a datetime must be UTC.
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_INNER_YEAR = (
    "(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
)
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DAY_31 = "(?:0[1-9]|[12][0-9]|3[01])"
_DAY_30 = "(?:0[1-9]|[12][0-9]|30)"
_DAY_28 = "(?:0[1-9]|1[0-9]|2[0-8])"
# Month-day of any year (29 February apart), and the same without 1 January / 31 December.
_MONTH_DAY = f"(?:(?:0[13578]|1[02])-{_DAY_31}|(?:0[469]|11)-{_DAY_30}|02-{_DAY_28})"
_MONTH_DAY_NOT_JAN_1 = (
    f"(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[3578]|1[02])-{_DAY_31}|(?:0[469]|11)-{_DAY_30}"
    f"|02-{_DAY_28})"
)
_MONTH_DAY_NOT_DEC_31 = (
    f"(?:(?:0[13578]|10)-{_DAY_31}|12-{_DAY_30}|(?:0[469]|11)-{_DAY_30}|02-{_DAY_28})"
)
_DATE = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
# Every date but 0001-01-01 and 9999-12-31 (0001 and 9999 are not leap years).
_INNER_DATE = (
    f"(?:{_INNER_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29"
    f"|0001-{_MONTH_DAY_NOT_JAN_1}|9999-{_MONTH_DAY_NOT_DEC_31})"
)
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_UTC = "(?:Z|[+-]00:00)"
DUE_DATE_PATTERN = f"^{_DATE}$"
DUE_DATETIME_PATTERN = (
    f"^(?:{_INNER_DATE}T{_TIME}{_OFFSET}|(?:0001-01-01|9999-12-31)T{_TIME}{_UTC})$"
)
INSTANT_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
_DUE_DATE_RE = re.compile(DUE_DATE_PATTERN)
_DUE_DATETIME_RE = re.compile(DUE_DATETIME_PATTERN)


def as_utc_instant(value: datetime) -> datetime:
    """An aware `value` as UTC; ValueError if it is naive or its instant lies outside
    INSTANT_RANGE (what Python's datetime, and so pymongo, can represent)."""
    if value.tzinfo is None:
        raise ValueError("a datetime needs an offset")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"must be an instant from {INSTANT_RANGE}") from exc


def parse_instant(value: str) -> datetime:
    """The UTC instant of a datetime with an offset (DUE_DATETIME_PATTERN), else ValueError."""
    if not _DUE_DATETIME_RE.fullmatch(value):
        raise ValueError(
            "must be a datetime with an offset (2026-12-01T09:00:00+02:00), "
            f"an instant from {INSTANT_RANGE}"
        )
    return as_utc_instant(datetime.fromisoformat(value))


def due_instant(due: str) -> datetime:
    """The UTC instant a due value sorts and filters by; a date counts as its midnight UTC.

    Raises ValueError for anything but an ISO date or an ISO datetime with an offset (within
    the range above).
    """
    if _DUE_DATE_RE.fullmatch(due):
        day = date.fromisoformat(due)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if _DUE_DATETIME_RE.fullmatch(due):
        return as_utc_instant(datetime.fromisoformat(due))
    raise ValueError(
        "must be a calendar date (2026-12-01) or a datetime with an offset "
        f"(2026-12-01T09:00:00+02:00), an instant from {INSTANT_RANGE}"
    )
