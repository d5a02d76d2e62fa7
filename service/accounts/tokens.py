"""Access tokens (JWT) and refresh tokens, and the session ids both carry: no I/O."""

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "typ", "sid"]
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 -- the `typ` claim's value, no secret


@dataclass(frozen=True, slots=True)
class TokenSettings:
    key: str
    issuer: str
    audience: str
    expires: timedelta


class InvalidTokenError(Exception):
    """The token is missing a claim, expired, wrongly signed or otherwise unusable."""


class ExpiredTokenError(InvalidTokenError):
    """A token that would be valid but for its `exp`: the client should refresh."""


def create_access_token(
    subject: str, settings: TokenSettings, *, session_id: str, now: datetime | None = None
) -> str:
    """A signed HS256 JWT for `subject` (a user id) in session `session_id`."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "typ": ACCESS_TOKEN_TYPE,
        "sub": subject,
        "sid": session_id,
        "iat": issued,
        "exp": issued + settings.expires,
        "iss": settings.issuer,
        "aud": settings.audience,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.key, algorithm=JWT_ALGORITHM)


def decode_access_token(token: str, settings: TokenSettings) -> dict[str, Any]:
    """The claims of a valid token; the algorithm is pinned, so `alg: none` never passes.

    ExpiredTokenError only for a token that is valid in every other way (signature, issuer,
    audience, claims): telling a client to refresh is pointless for any other.
    """
    try:
        return _checked_claims(token, settings, verify_exp=True)
    except jwt.ExpiredSignatureError as exc:
        try:
            _checked_claims(token, settings, verify_exp=False)
        except jwt.PyJWTError as other:
            raise InvalidTokenError(str(other)) from other
        raise ExpiredTokenError(str(exc)) from exc
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from exc


def _checked_claims(token: str, settings: TokenSettings, *, verify_exp: bool) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        settings.key,
        algorithms=[JWT_ALGORITHM],
        issuer=settings.issuer,
        audience=settings.audience,
        options={"require": REQUIRED_CLAIMS, "verify_exp": verify_exp},
    )
    if not isinstance(claims.get("sub"), str):
        raise jwt.InvalidTokenError("sub must be a string")
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise jwt.InvalidTokenError("not an access token")
    if not isinstance(claims.get("sid"), str):
        raise jwt.InvalidTokenError("sid must be a string")
    return claims


# Session ids are 128 random bits (22 base64url characters), not ObjectIds: a client sends
# them (refresh token prefix, `sid` claim, DELETE /api/sessions/{id}), and an ObjectId can be
# guessed from ids created around it.
SESSION_ID_BYTES = 16
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{22}$"
_SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)

# `<session id>.<43 characters of base64url>`: 256 random bits, and the session to look in.
REFRESH_TOKEN_PATTERN = re.compile(r"([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")
# A token is 66 characters; one from before session ids were random had 68, and still gets the
# 401 that tells its client to log in again rather than a 422.
REFRESH_TOKEN_MAX_LENGTH = 68
REFRESH_TOKEN_BYTES = 32


def new_session_id() -> str:
    """A new session id: 128 random bits, base64url."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def is_session_id(value: str) -> bool:
    """Whether `value` has the shape of a session id (an old ObjectId one hasn't)."""
    return _SESSION_ID_RE.fullmatch(value) is not None


def create_refresh_token(session_id: str) -> str:
    """A new opaque refresh token for a session: 256 random bits, prefixed by the session id.

    The prefix lets a refresh find its session by primary key, and so tell a replayed old
    token (theft: the session is revoked) from an unknown one.
    """
    return f"{session_id}.{secrets.token_urlsafe(REFRESH_TOKEN_BYTES)}"


def refresh_token_session(token: str) -> str | None:
    """The session id a well-formed refresh token names, else None."""
    match = REFRESH_TOKEN_PATTERN.fullmatch(token)
    return match.group(1) if match else None


def hash_refresh_token(token: str) -> str:
    """What is stored instead of the token: its SHA-256, hex (the token has 256 bits already)."""
    return hashlib.sha256(token.encode()).hexdigest()
