"""Entity tags for todos: derived from `version`, and the If-Match / If-None-Match checks.

ETags are strong (`"3"` for version 3): a version names exactly one representation.
"""

import re

_ETAG_RE = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def etag(version: int) -> str:
    """The ETag header value of a todo at `version`."""
    return f'"{version}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    """(is_weak, opaque value) of each entity tag in a comma-separated header."""
    return [
        (match.group(1) is not None, match.group(2))
        for part in header.split(",")
        if (match := _ETAG_RE.fullmatch(part))
    ]


def _version(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 18 else None


def if_match_versions(header: str | None) -> list[int] | None:
    """The versions an If-Match header allows; None when any version is fine (absent or `*`).

    Comparison is strong (RFC 9110): weak tags and tags this service didn't make match
    nothing, so an If-Match made only of those allows no version at all (an empty list).
    """
    if header is None or header.strip() == "*":
        return None
    return [
        version
        for weak, value in _tags(header)
        if not weak and (version := _version(value)) is not None
    ]


def none_match(header: str | None, version: int) -> bool:
    """Whether an If-None-Match header matches a todo at `version` (weak comparison)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(_version(value) == version for _, value in _tags(header))
