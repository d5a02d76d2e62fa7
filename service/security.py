"""Password hashing and access tokens: no I/O; hashing runs in bounded worker threads."""

import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

R = TypeVar("R")

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "typ", "sid"]
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 -- the `typ` claim's value, no secret

# Argon2id for new hashes; bcrypt is only verified, so hashes imported from older systems work
# and are upgraded on the next login. pwdlib's parameters (64 MiB, t=3) but one lane instead of
# four: each lane is a thread, and 4 threads per login starved the event loop on small hosts
# (bench/REPORT.md, login storm). Same memory and work per hash, so the same cost to an
# attacker; older p=4 hashes still verify and are rehashed on the next login.
password_hash = PasswordHash((Argon2Hasher(parallelism=1), BcryptHasher()))
BCRYPT_MAX_PASSWORD_BYTES = 72

# Verified when the email is unknown, so that path costs the same as a wrong password.
DUMMY_HASH = password_hash.hash("dummy password for timing equalisation")


def hash_password(password: str) -> str:
    """Hash a password with Argon2id. CPU-bound (~100 ms): call it off the event loop."""
    return password_hash.hash(password)


def verify_password(password: str, hashed: str) -> tuple[bool, str | None]:
    """Check a password; on success also return a new hash if the stored one is outdated."""
    if BcryptHasher.identify(hashed) and len(password.encode()) > BCRYPT_MAX_PASSWORD_BYTES:
        # bcrypt only ever sees 72 bytes, so such a password can't have been hashed whole:
        # refuse it rather than truncate (bcrypt 5 raises here instead of truncating).
        return False, None
    return password_hash.verify_and_update(password, hashed)


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


class PasswordHasherBusy(Exception):
    """PASSWORD_HASH_QUEUE requests are already waiting for a hashing slot."""


# The hasher the current request already holds a place in (PasswordHasher.admitted).
_admitted: ContextVar["PasswordHasher | None"] = ContextVar(
    "password_hasher_admitted", default=None
)


class PasswordHasher:
    """Hashes and verifies in worker threads, at most `concurrency` at once, `queue` waiting.

    Argon2 and bcrypt hold the CPU for ~100-250 ms: inside `async def` they would stall every
    other request, and unbounded they would take every thread (and 64 MiB each for Argon2).
    A request that would have to wait behind `queue` others raises PasswordHasherBusy at once
    instead: a burst would otherwise delay every login behind it by seconds.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._capacity = concurrency + queue
        # Requests holding a place: hashing, or on their way to it. Checked and counted with
        # no await in between, so the bound holds under any number of concurrent callers.
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests hashing or waiting to."""
        return self._in_flight

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold a place for the whole of a request's password check, its database work
        included, so that a burst beyond the queue is refused before it costs anything;
        PasswordHasherBusy if there is none. Nested use (and hashing inside) takes no other.
        """
        if _admitted.get() is self:
            yield
            return
        if self._in_flight >= self._capacity:
            raise PasswordHasherBusy
        self._in_flight += 1
        token = _admitted.set(self)
        try:
            yield
        finally:
            _admitted.reset(token)
            self._in_flight -= 1

    async def _run(self, function: Callable[..., R], *args: str) -> R:
        async with self.admitted():
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    async def hash(self, password: str) -> str:
        """Argon2id hash of password."""
        return await self._run(hash_password, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """See verify_password."""
        return await self._run(verify_password, password, hashed)
