"""Password hashing: Argon2id (bcrypt verified and upgraded), in bounded worker threads."""

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from service.core.threads import BoundedThreads

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


class PasswordHasherBusy(Exception):
    """PASSWORD_HASH_QUEUE requests are already waiting for a hashing slot."""


class PasswordHasher(BoundedThreads):
    """Hashes and verifies in worker threads, at most `concurrency` at once, `queue` waiting.

    Argon2 and bcrypt hold the CPU for ~100-250 ms: inside `async def` they would stall every
    other request, and unbounded they would take every thread (and 64 MiB each for Argon2).
    A request that would have to wait behind `queue` others raises PasswordHasherBusy at once
    instead: a burst would otherwise delay every login behind it by seconds. A request holds
    its place (`admitted`) for the whole of its password check, its database work included.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        super().__init__(concurrency, queue, PasswordHasherBusy)

    async def hash(self, password: str) -> str:
        """Argon2id hash of password."""
        return await self.run(hash_password, password)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """See verify_password. `hashed` None (no such account) still costs one verification,
        of DUMMY_HASH, so that timing doesn't reveal which emails have accounts; it always
        fails."""
        valid, new_hash = await self.run(verify_password, password, hashed or DUMMY_HASH)
        return valid and hashed is not None, new_hash
