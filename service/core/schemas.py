"""Schema building blocks every feature's API models use."""

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
)

from service.core.clock import as_utc

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


# Text fields are trimmed after validation. The limits apply to the text as sent (so the
# schema states them exactly), and it must hold something besides white space. White space is
# spelt out (what Python's str.strip removes), because regex engines disagree on `\s`:
# ECMA-262 (JSON Schema's) doesn't count \x1c-\x1f, Python does.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def trim(value: str) -> str:
    return value.strip(WHITESPACE)


class InputModel(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped.

    Strict: a body says `true`, not `1` or `"yes"` (lax coercion would accept input the
    OpenAPI schema calls invalid).
    """

    # python-re: patterns mean what Python's `re` (and so str.strip) means by white space.
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class ErrorDetail(BaseModel):
    detail: str | list[dict[str, object]]
