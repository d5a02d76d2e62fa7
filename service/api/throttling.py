"""Login and signup throttling: counters in MongoDB (crud.throttle), limits from Settings."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends

from service import crud
from service.api.deps import ClientIP, ClockDep, PasswordHasherDep, SettingsDep
from service.config import Settings
from service.exceptions import BadRequest, TooManyRequests
from service.models import User
from service.security import PasswordHasher

LOGIN_EMAIL = "login-email"
LOGIN_IP = "login-ip"
SIGNUP_IP = "signup-ip"


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """Failed logins per email and per client IP within LOGIN_WINDOW_SECONDS."""

    settings: Settings
    email: str
    ip: str
    now: datetime

    @property
    def _window(self) -> timedelta:
        return timedelta(seconds=self.settings.login_window_seconds)

    async def check(self) -> bool:
        """429 if the email or the IP has used up its failures (even for the right password);
        else whether the email has failures counted (for `succeeded`)."""
        limits = {
            (LOGIN_EMAIL, self.email): self.settings.login_max_failures,
            (LOGIN_IP, self.ip): self.settings.login_max_failures_per_ip,
        }
        counts = await crud.throttle.current(subjects=list(limits), now=self.now)
        blocked = [count for key, count in counts.items() if count.hits >= limits[key]]
        if blocked:
            retry_after = max(count.retry_after(self.now) for count in blocked)
            raise TooManyRequests(
                "Too many failed logins; try again later", retry_after=retry_after
            )
        return (LOGIN_EMAIL, self.email) in counts

    async def failed(self) -> None:
        """Count a failure against both the email and the IP."""
        for kind, subject in ((LOGIN_EMAIL, self.email), (LOGIN_IP, self.ip)):
            await crud.throttle.hit(kind=kind, subject=subject, now=self.now, window=self._window)

    async def succeeded(self, *, email_counted: bool) -> None:
        """A successful login clears the email's count (not the IP's).

        `email_counted` is what `check` returned: with no failures counted there is nothing
        to clear, which spares nearly every login a write. A failure counted after the check
        stays counted, as if it had come after this login.
        """
        if email_counted:
            await crud.throttle.clear(kind=LOGIN_EMAIL, subject=self.email)


async def limit_signups(settings: SettingsDep, ip: ClientIP, clock: ClockDep) -> None:
    """Count a signup attempt for the client IP; 429 past SIGNUP_MAX_PER_IP in the window."""
    now = clock()
    count = await crud.throttle.hit(
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


SignupLimit = Annotated[None, Depends(limit_signups)]


INCORRECT_PASSWORD = "Incorrect password"  # noqa: S105 -- an error message


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """Checks the current user's password where a route asks for it again."""

    passwords: PasswordHasher
    settings: Settings
    ip: str
    now: datetime

    async def __call__(self, user: User, password: str) -> None:
        """400 unless `password` is the user's. Failures count like failed logins of the
        email, so that a stolen access token can't be used to guess the password either."""
        throttle = LoginThrottle(settings=self.settings, email=user.email, ip=self.ip, now=self.now)
        await throttle.check()
        valid, _ = await self.passwords.verify(password, user.hashed_password)
        if not valid:
            await throttle.failed()
            raise BadRequest(INCORRECT_PASSWORD)


async def get_password_check(
    passwords: PasswordHasherDep, settings: SettingsDep, ip: ClientIP, clock: ClockDep
) -> PasswordCheck:
    return PasswordCheck(passwords=passwords, settings=settings, ip=ip, now=clock())


PasswordCheckDep = Annotated[PasswordCheck, Depends(get_password_check)]
