"""Parallel password guessing: how many guesses does a burst get verified?

Runs the app in process against the embedded SecantusDB (or MONGODB_URL), with the default
limits, and fires the bursts of the hardening issue, each from its own client address:

1. 24 parallel logins for one account, 23 wrong passwords and the right one last;
2. 60 parallel wrong logins (unknown emails) from one address, while another user logs in
   from elsewhere (how long that login takes, and its status);
3. 16 parallel `PUT /api/me/password` with a stolen access token, 15 wrong current
   passwords and the right one last.

It counts the password verifications actually run (service.passwords.verify_password).

    .venv/bin/python -m bench.throttle_burst [--hash-queue N]
"""

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pymongo import AsyncMongoClient
from starlette.types import ASGIApp

from bench.database_url import database_url
from service.accounts import passwords
from service.app import create_app
from service.config import Environment, Settings

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new password"


class CountedVerify:
    """service.passwords.verify_password, counting its calls (they run in worker threads)."""

    def __init__(self, verify: Callable[[str, str], tuple[bool, str | None]]) -> None:
        self._verify = verify
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, password: str, hashed: str) -> tuple[bool, str | None]:
        with self._lock:
            self.calls += 1
        return self._verify(password, hashed)


def client_at(app: ASGIApp, ip: str) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app, client=(ip, 50000)), base_url="http://bench")


def login_form(email: str, password: str) -> dict[str, str]:
    return {"username": email, "password": password}


async def sign_up(client: AsyncClient, email: str) -> None:
    body = {"email": email, "fname": "B", "lname": "B", "password": PASSWORD}
    response = await client.post("/api/users", json=body)
    assert response.status_code == 201, response.text


async def one_email(app: ASGIApp, counted: CountedVerify, email: str) -> dict[str, Any]:
    async with client_at(app, "10.0.0.1") as client:
        before = counted.calls
        forms = [login_form(email, f"wrong password {i}") for i in range(23)]
        forms.append(login_form(email, PASSWORD))
        responses = await asyncio.gather(*(client.post("/api/token", data=f) for f in forms))
        verified = counted.calls - before
        after = await client.post("/api/token", data=login_form(email, PASSWORD))
    return {
        "statuses": dict(Counter(r.status_code for r in responses)),
        "verifications": verified,
        "right password (24th, in the burst)": responses[-1].status_code,
        "right password after the burst": after.status_code,
    }


async def one_ip(app: ASGIApp, counted: CountedVerify, bystander: str) -> dict[str, Any]:
    async with client_at(app, "10.0.0.2") as client, client_at(app, "10.0.0.9") as other:
        before = counted.calls

        async def bystander_login() -> tuple[int, float]:
            await asyncio.sleep(0.05)  # once the burst is queued
            started = time.perf_counter()
            response = await other.post("/api/token", data=login_form(bystander, PASSWORD))
            return response.status_code, time.perf_counter() - started

        forms = [login_form(f"nobody-{i}@example.com", "wrong password") for i in range(60)]
        aside = asyncio.ensure_future(bystander_login())
        responses = await asyncio.gather(*(client.post("/api/token", data=f) for f in forms))
        status, seconds = await aside
        verified = counted.calls - before
    return {
        "statuses": dict(Counter(r.status_code for r in responses)),
        "verifications (incl. the bystander's)": verified,
        "another user's login during the burst": f"{status} after {seconds:.2f} s",
    }


async def password_change(app: ASGIApp, counted: CountedVerify, email: str) -> dict[str, Any]:
    async with client_at(app, "10.0.0.3") as client:
        login = await client.post("/api/token", data=login_form(email, PASSWORD))
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        before = counted.calls
        guesses = [f"wrong password {i}" for i in range(15)] + [PASSWORD]
        responses = await asyncio.gather(
            *(
                client.put(
                    "/api/me/password",
                    json={"current_password": guess, "new_password": NEW_PASSWORD},
                    headers=headers,
                )
                for guess in guesses
            )
        )
        verified = counted.calls - before
    return {
        "statuses": dict(Counter(r.status_code for r in responses)),
        "verifications": verified,
        "password changed": any(r.status_code == 204 for r in responses),
    }


async def measure(url: str, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    database = f"bench_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        mongodb_url=url,
        mongodb_db=database,
        secret_key="bench-secret-key-" + "x" * 40,  # type: ignore[arg-type]  # str → SecretStr
        **overrides,
    )
    counted = CountedVerify(passwords.verify_password)
    passwords.verify_password = counted  # PasswordHasher looks it up at each call
    app = create_app(settings)
    try:
        async with LifespanManager(app) as manager:
            emails = [f"burst-{i}@example.com" for i in range(3)]
            async with client_at(manager.app, "10.0.0.100") as client:
                for email in emails:
                    await sign_up(client, email)
            return {
                "24 parallel logins, one email": await one_email(manager.app, counted, emails[0]),
                "60 parallel logins, one IP": await one_ip(manager.app, counted, emails[1]),
                "16 parallel PUT /api/me/password": await password_change(
                    manager.app, counted, emails[2]
                ),
            }
    finally:
        client_: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        await client_.drop_database(database)
        await client_.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hash-queue", type=int, help="PASSWORD_HASH_QUEUE for the run (default: its default)"
    )
    args = parser.parse_args()
    overrides = {} if args.hash_queue is None else {"password_hash_queue": args.hash_queue}
    with database_url() as url:
        results = asyncio.run(measure(url, overrides))
    for scenario, figures in results.items():
        print(scenario)
        for name, value in figures.items():
            print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
