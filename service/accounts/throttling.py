"""The throttling rules: what is counted (password checks, refreshes, signups, email
changes), per what (email, client IP, user), up to which limit of Settings, and the 429 past it.

The counting itself, atomic and shared by every worker, is counters.py's.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from beanie import PydanticObjectId

from service.accounts import counters
from service.accounts.passwords import PasswordHasher
from service.config import Settings
from service.errors import TooManyRequests

LOGIN_EMAIL = "login-email"
LOGIN_IP = "login-ip"
SIGNUP_IP = "signup-ip"
REFRESH_IP = "refresh-ip"
EMAIL_CHANGE_USER = "email-change-user"  # counted per user id

TOO_MANY_LOGINS = "Too many failed logins; try again later"
TOO_MANY_REFRESHES = "Too many failed refreshes; try again later"


async def _reserve_all(
    budgets: list[tuple[str, str, int]], *, now: datetime, window: timedelta, message: str
) -> list[counters.Reserved]:
    """A slot in each (kind, subject, limit) budget, or 429 (none kept) if one is used up."""
    reserved: list[counters.Reserved] = []
    try:
        for kind, subject, limit in budgets:
            taken = await counters.reserve(
                kind=kind, subject=subject, now=now, window=window, limit=limit
            )
            if isinstance(taken, counters.Full):
                raise TooManyRequests(message, retry_after=taken.count.retry_after(now))
            reserved.append(taken)
    except Exception:
        await _release_all(reserved, now=now)
        raise
    return reserved


async def _release_all(reserved: list[counters.Reserved], *, now: datetime) -> None:
    for slot in reserved:
        await counters.release(reserved=slot, now=now)


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """Failed password checks per email and per client IP within LOGIN_WINDOW_SECONDS.

    Every check of a password (logins, and the routes that ask for it again) goes through
    `verify`: it counts the attempt *before* the password is verified, as one conditional
    update per counter, so that a burst of parallel guesses gets at most the limit verified
    and the rest are 429 (even with the right password). A wrong password keeps its count; a
    right one gives it back (a login clears the email's count instead).
    """

    settings: Settings
    email: str
    ip: str
    now: datetime

    async def verify(
        self, passwords: PasswordHasher, password: str, hashed: str | None, *, login: bool
    ) -> tuple[bool, str | None]:
        """`passwords.verify(password, hashed)`, counted; 429 if a budget is used up.

        `hashed` None (no such account) is verified like any other (see PasswordHasher.verify).
        """
        async with passwords.admitted():  # 503 at once, before anything is counted
            email, ip = await _reserve_all(
                [
                    (LOGIN_EMAIL, self.email, self.settings.login_max_failures),
                    (LOGIN_IP, self.ip, self.settings.login_max_failures_per_ip),
                ],
                now=self.now,
                window=timedelta(seconds=self.settings.login_window_seconds),
                message=TOO_MANY_LOGINS,
            )
            try:
                valid, new_hash = await passwords.verify(password, hashed)
            except Exception:
                # The check itself failed: not an attempt. A cancelled request keeps its
                # count: giving it back would need awaiting inside the cancellation.
                await _release_all([email, ip], now=self.now)
                raise
        if valid:
            if login:
                await counters.clear(kind=LOGIN_EMAIL, subject=self.email)
                await _release_all([ip], now=self.now)
            else:
                await _release_all([email, ip], now=self.now)
        return valid, new_hash


@dataclass(frozen=True, slots=True)
class RefreshThrottle:
    """Failed refreshes per client IP within LOGIN_WINDOW_SECONDS, counted before trying."""

    settings: Settings
    ip: str
    now: datetime

    async def attempt(self) -> counters.Reserved:
        """Count a refresh attempt for the IP; 429 if its failures are used up."""
        (slot,) = await _reserve_all(
            [(REFRESH_IP, self.ip, self.settings.refresh_max_failures_per_ip)],
            now=self.now,
            window=timedelta(seconds=self.settings.login_window_seconds),
            message=TOO_MANY_REFRESHES,
        )
        return slot

    async def succeeded(self, slot: counters.Reserved) -> None:
        """The attempt doesn't count as a failure."""
        await counters.release(reserved=slot, now=self.now)


async def count_signup(*, settings: Settings, ip: str, now: datetime) -> None:
    """Count a signup attempt for the client IP; 429 past SIGNUP_MAX_PER_IP in the window."""
    count = await counters.hit(
        kind=SIGNUP_IP,
        subject=ip,
        now=now,
        window=timedelta(seconds=settings.signup_window_seconds),
    )
    if count.hits > settings.signup_max_per_ip:
        raise TooManyRequests(
            "Too many signups from your address; try again later",
            retry_after=count.retry_after(now),
        )


async def count_email_change(
    *, settings: Settings, user_id: PydanticObjectId, now: datetime
) -> None:
    """Count an email change attempt of the user (atomically, so parallel ones can't slip
    past); 429 past EMAIL_CHANGE_MAX_PER_USER within EMAIL_CHANGE_WINDOW_SECONDS.

    A change to a taken address answers 409 (it can't pretend to succeed), which tells the
    caller that the address has an account: counting every attempt, before anything else is
    checked, bounds how many addresses one account can test.
    """
    count = await counters.hit(
        kind=EMAIL_CHANGE_USER,
        subject=str(user_id),
        now=now,
        window=timedelta(seconds=settings.email_change_window_seconds),
    )
    if count.hits > settings.email_change_max_per_user:
        raise TooManyRequests(
            "Too many email changes; try again later", retry_after=count.retry_after(now)
        )


INVITATIONS_SENT = "invitations-user"  # counted per user id, in a rolling window


async def count_invitation(*, settings: Settings, user_id: PydanticObjectId, now: datetime) -> None:
    """Count an invitation the user is about to send (atomically, before anything else is
    checked, so that parallel ones can't slip past); 429 with `Retry-After` (when the oldest
    counted one leaves the window) past MAX_INVITATIONS_PER_DAY in any 24 hours.

    Every attempt counts, refused ones (409) included: re-invites are invitations sent too,
    and a refusal is rare enough that counting it costs an honest owner nothing.
    """
    taken = await counters.reserve_rolling(
        kind=INVITATIONS_SENT,
        subject=str(user_id),
        now=now,
        window=timedelta(days=1),
        limit=settings.max_invitations_per_day,
    )
    if isinstance(taken, counters.Full):
        raise TooManyRequests(
            "Too many invitations sent in the last 24 hours; try again later",
            retry_after=taken.count.retry_after(now),
        )
