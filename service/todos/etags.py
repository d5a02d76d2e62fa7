"""Entity tags for todos: derived from `version`, and the If-Match / If-None-Match checks.

ETags are strong (`"3"` for version 3): a version names exactly one representation.
"""

import re

# RFC 9110: `*`, or a comma-separated list of entity tags (`"x"` or `W/"x"`, where x is any
# visible ASCII but `"`, or obs-text); empty list elements and white space around commas are
# allowed, as recipients must accept them. Anything else is a malformed header (400).
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
CONDITION_PATTERN = rf"^(?:\*|(?:,[ \t]*)*{_ENTITY_TAG}(?:[ \t]*,(?:[ \t]*{_ENTITY_TAG})?)*)$"
_CONDITION_RE = re.compile(CONDITION_PATTERN)
_TAG_RE = re.compile(r'(W/)?"([^"]*)"')
# The opaque part of an ETag this service made: a version, written without leading zeros.
_VERSION_RE = re.compile(r"[1-9][0-9]{0,17}")


class MalformedConditionError(ValueError):
    """An If-Match / If-None-Match value that is neither `*` nor a list of entity tags."""


def etag(version: int) -> str:
    """The ETag header value of a todo at `version`."""
    return f'"{version}"'


def check_condition(header: str) -> str:
    """`header` if it is `*` or a list of entity tags (RFC 9110), else MalformedConditionError."""
    if not _CONDITION_RE.fullmatch(header):
        raise MalformedConditionError(header)
    return header


def _tags(header: str) -> list[tuple[bool, str]]:
    """(is_weak, opaque value) of each entity tag in a well-formed list."""
    return [(match.group(1) is not None, match.group(2)) for match in _TAG_RE.finditer(header)]


def _version(value: str) -> int | None:
    return int(value) if _VERSION_RE.fullmatch(value) else None


def if_match_versions(header: str | None) -> list[int] | None:
    """The versions an If-Match header allows; None when any version is fine (absent or `*`).

    Comparison is strong (RFC 9110): weak tags and tags this service didn't make match
    nothing, so an If-Match made only of those allows no version at all (an empty list).
    MalformedConditionError if the header is not `*` or a list of entity tags.
    """
    if header is None or check_condition(header) == "*":
        return None
    return [
        version
        for weak, value in _tags(header)
        if not weak and (version := _version(value)) is not None
    ]


def none_match(header: str | None, version: int) -> bool:
    """Whether an If-None-Match header matches a todo at `version` (weak comparison).

    MalformedConditionError if the header is not `*` or a list of entity tags.
    """
    if header is None:
        return False
    if check_condition(header) == "*":
        return True
    return any(_version(value) == version for _, value in _tags(header))
