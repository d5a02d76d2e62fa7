"""What accounts send and receive: users, tokens, sessions."""

import functools
import re
import unicodedata
from typing import Annotated, Any, Literal, Self

from pydantic import (
    MISSING,
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from service.accounts.models import Session, User
from service.accounts.tokens import REFRESH_TOKEN_MAX_LENGTH
from service.core.schemas import NOT_BLANK, InputModel, UtcDatetime, trim
from service.core.store import id_of

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254


# ---- Email addresses ----
# The rule is the pattern below, stated in the schema and checked as such; nothing else is
# refused. An address is `local@domain`: the local part is dot-separated runs of letters,
# digits and ``!#$%&'*+/=?^_`{|}~-``; the domain is two or more dot-separated labels of
# letters, digits and inner hyphens, the last one two letters or more. Letters are those whose
# normal form (below) is Latin, Greek or Cyrillic letters, and the local part, like each
# domain label, keeps to one of those scripts: `paypal` with a Cyrillic er (U+0440) for its
# `p` is refused. Special-use domains (.test, .example, .invalid, ...) are accepted: the service
# sends no mail. No `format: email`: the pattern is the whole rule.
EMAIL_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")
_EMAIL_SPECIALS = "!#$%&'*+/=?^_`{|}~-"
# Where letters whose normal form is Latin, Greek or Cyrillic live (scanning only these
# blocks takes a tenth of a second less than the whole BMP; a test checks nothing is missed).
EMAIL_LETTER_BLOCKS = ((0x41, 0x2FFF), (0xA640, 0xABFF), (0xFB00, 0xFB4F), (0xFF00, 0xFFEF))
EMAIL_DESCRIPTION = (
    f"At most {EMAIL_MAX_LENGTH} characters: `local@domain`, as the pattern says. The local "
    "part is dot-separated runs of letters, digits and ``!#$%&'*+/=?^_`{|}~-``; the domain is "
    "two or more dot-separated labels of letters, digits and inner hyphens, the last one two "
    "letters or more. Letters are Latin, Greek or Cyrillic, and the local part and "
    "each domain label keep to one script (`paypal` spelt with a Cyrillic `\u0440` for its `p` "
    "is refused). Special-use domains such as `.test` are accepted. Stored in Unicode NFKC, then "
    "lower-case."
)


def normalise_email(value: str) -> str:
    """The one form an email is stored, looked up and throttled by: NFKC, then lower-case."""
    return unicodedata.normalize("NFKC", value).lower()


def letter_script(char: str) -> str | None:
    """LATIN, GREEK or CYRILLIC for a letter of that script (by its Unicode name), else None."""
    if not unicodedata.category(char).startswith("L"):
        return None
    script = unicodedata.name(char, "").split(" ", 1)[0]
    return script if script in EMAIL_SCRIPTS else None


def _normal_script(char: str) -> str | None:
    """The one script of a letter's normal form (fullwidth `p`, long `s`: Latin), else None."""
    if not unicodedata.category(char).startswith("L"):
        return None
    scripts = {letter_script(c) for c in normalise_email(char)}
    return scripts.pop() if len(scripts) == 1 else None


def _char_class(codes: list[int]) -> str:
    """The inside of a regex character class for these code points, as ranges."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in ranges
    )


@functools.cache
def email_letters() -> dict[str, list[int]]:
    """Per script, the code points admitted as its letters (computed once, on first use)."""
    letters: dict[str, list[int]] = {script: [] for script in EMAIL_SCRIPTS}
    for low, high in EMAIL_LETTER_BLOCKS:
        for code in range(low, high + 1):
            if script := _normal_script(chr(code)):
                letters[script].append(code)
    return letters


@functools.cache
def email_pattern() -> str:
    """The schema's pattern: one alternative per script, so that mixing can't match.

    A domain label of digits and hyphens only has an alternative of its own, and a script's
    label needs one of its letters: alternatives that overlapped would backtrack
    exponentially on a long domain that fails at its end. Runs are bounded (64 characters in
    the local part, 61 around a label's first letter), which also keeps the addresses a
    fuzzer draws from the pattern mostly within the length limit.
    """
    # Only what a class needs escaped (`^`, `-`): ECMA-262 with the `u` flag refuses `\\#`.
    specials = _EMAIL_SPECIALS.replace("^", "\\^").replace("-", "\\-")
    local_parts, labels, last_labels = [], ["[0-9](?:[0-9\\-]{0,61}[0-9])?"], []
    for codes in email_letters().values():
        letters = _char_class(codes)
        atom = f"[0-9{specials}{letters}]{{1,64}}"
        local_parts.append(f"{atom}(?:\\.{atom})*")
        # Digits and hyphens up to the first letter, then letters, digits and inner hyphens.
        labels.append(
            f"(?:[0-9][0-9\\-]{{0,61}})?[{letters}](?:[0-9{letters}\\-]{{0,61}}[0-9{letters}])?"
        )
        last_labels.append(f"[{letters}]{{2,63}}")
    local, label, last = ("|".join(options) for options in (local_parts, labels, last_labels))
    return f"^(?:{local})@(?:(?:{label})\\.)+(?:{last})$"


@functools.cache
def _email_regex() -> re.Pattern[str]:
    return re.compile(email_pattern())


def _mixed_scripts(value: str) -> str | None:
    """Why `value` mixes scripts (in its local part or a domain label), else None."""
    local, _, domain = normalise_email(value).rpartition("@")
    parts = [("the local part", local)] + [("the domain", label) for label in domain.split(".")]
    for where, part in parts:
        scripts = sorted({s for c in part if (s := letter_script(c))})
        if len(scripts) > 1:
            names = " and ".join(script.title() for script in scripts)
            return f"{where} mixes {names} letters; use letters of one script only"
    return None


def check_email(value: str) -> str:
    """The normal form of an address the pattern accepts; else ValueError saying why."""
    if _email_regex().fullmatch(value) is None:
        mixed = _mixed_scripts(value) if "@" in value else None
        raise ValueError(
            f"Not an accepted email address: {mixed or 'see the pattern and description'}"
        )
    return normalise_email(value)


def _email_json_schema(schema: dict[str, Any]) -> None:
    schema["pattern"] = email_pattern()


Email = Annotated[
    str,
    Field(
        max_length=EMAIL_MAX_LENGTH,
        description=EMAIL_DESCRIPTION,
        json_schema_extra=_email_json_schema,  # computed on first use, not at import
    ),
    AfterValidator(check_email),
]


Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=NOT_BLANK,
        description=f"1 to {NAME_MAX_LENGTH} characters, not all white space; "
        "leading and trailing white space is removed.",
    ),
    AfterValidator(trim),
]
# Passwords are taken exactly as sent (no stripping): spaces may be part of them.
Password = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        description=f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters.",
    ),
]


class UserCreate(InputModel):
    email: Email
    fname: Name
    lname: Name
    password: Password


class UserPublic(BaseModel):
    id: str
    email: str
    fname: str
    lname: str
    created_at: UtcDatetime

    @classmethod
    def from_document(cls, user: User) -> Self:
        return cls(
            id=str(id_of(user)),
            email=user.email,
            fname=user.fname,
            lname=user.lname,
            created_at=user.created_at,
        )


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 -- the OAuth2 token type, no secret
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(
        description="Opaque; exchange it at `POST /api/token/refresh` for a new pair. "
        "Each one works once."
    )


# Checked against the stored hash, so only the length is limited: any password ever accepted
# must still be accepted here.
CurrentPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]


class RefreshRequest(InputModel):
    refresh_token: str = Field(min_length=1, max_length=REFRESH_TOKEN_MAX_LENGTH)


class UserUpdate(InputModel):
    """A partial update of your account; changing `email` needs `current_password` too."""

    # The schema says so too (dependentRequired), so that a body it allows is one we accept.
    model_config = ConfigDict(
        json_schema_extra={"dependentRequired": {"email": ["current_password"]}}
    )

    # MISSING, not None, for a field that wasn't sent: the schema then says "optional" without
    # also admitting null, which the API refuses.
    fname: Name | MISSING = MISSING
    lname: Name | MISSING = MISSING
    email: Email | MISSING = MISSING
    current_password: CurrentPassword | MISSING = Field(
        default=MISSING, description="Required when `email` is sent."
    )

    @model_validator(mode="after")
    def _email_needs_password(self) -> Self:
        if self.email is not MISSING and self.current_password is MISSING:
            raise ValueError("current_password is required to change the email")
        return self


class PasswordChange(InputModel):
    current_password: CurrentPassword
    new_password: Password


class AccountDeletion(InputModel):
    password: CurrentPassword


class SessionPublic(BaseModel):
    id: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime
    expires_at: UtcDatetime
    user_agent: str
    ip: str
    current: bool = Field(description="Whether this is the session of the token you sent.")

    @classmethod
    def from_document(cls, session: Session, *, current: bool) -> Self:
        return cls(
            id=str(id_of(session)),
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            user_agent=session.user_agent,
            ip=session.ip,
            current=current,
        )
