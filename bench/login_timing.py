"""Login timing: does a wrong password take as long as an unknown email?

Both paths must cost one password verification each, so that response time doesn't tell
which emails have accounts. This runs the app in process (no network noise) against the
embedded SecantusDB (or MONGODB_URL), with the login throttling limits raised for its own
run, and alternates the two kinds of attempt so that drift hits both alike.

    .venv/bin/python -m bench.login_timing [--tries 100]

Prints the median (and quartiles) of each and the ratio of the medians; target: within 10%.
"""

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pymongo import AsyncMongoClient

from bench.database_url import database_url
from service.app import create_app
from service.config import Environment, Settings

PASSWORD = "correct horse battery staple"
WRONG = "wrong horse battery staple!"
NO_LIMIT = 100_000  # the largest LOGIN_MAX_FAILURES allows; far above this run


async def _attempt(client: AsyncClient, email: str) -> float:
    started = time.perf_counter()
    response = await client.post("/api/token", data={"username": email, "password": WRONG})
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.text
    return elapsed


async def measure(url: str, tries: int, warmup: int) -> dict[str, list[float]]:
    """Alternate wrong-password and unknown-email logins; their latencies in seconds."""
    database = f"bench_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        mongodb_url=url,
        mongodb_db=database,
        secret_key="bench-secret-key-" + "x" * 40,  # type: ignore[arg-type]
        login_max_failures=NO_LIMIT,
        login_max_failures_per_ip=NO_LIMIT,
        signup_max_per_ip=NO_LIMIT,
    )
    app = create_app(settings)
    samples: dict[str, list[float]] = {"wrong password": [], "unknown email": []}
    try:
        async with (
            LifespanManager(app) as manager,
            AsyncClient(transport=ASGITransport(manager.app), base_url="http://bench") as client,
        ):
            email = "timing@example.com"
            body = {"email": email, "fname": "T", "lname": "T", "password": PASSWORD}
            assert (await client.post("/api/users", json=body)).status_code == 201
            for i in range(warmup + tries):
                pair = [
                    ("wrong password", email),
                    ("unknown email", f"nobody-{i}@example.com"),
                ]
                if i % 2:  # alternate which goes first
                    pair.reverse()
                for kind, address in pair:
                    elapsed = await _attempt(client, address)
                    if i >= warmup:
                        samples[kind].append(elapsed)
    finally:
        client_: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        await client_.drop_database(database)
        await client_.close()
    return samples


def report(samples: dict[str, list[float]]) -> None:
    medians = {}
    for kind, values in samples.items():
        q1, _, q3 = statistics.quantiles(values, n=4)
        medians[kind] = statistics.median(values)
        print(
            f"{kind:>15}: n={len(values)} median={medians[kind] * 1000:.1f} ms "
            f"(quartiles {q1 * 1000:.1f}-{q3 * 1000:.1f} ms)"
        )
    ratio = medians["wrong password"] / medians["unknown email"]
    print(f"median ratio wrong-password / unknown-email: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=100, help="attempts of each kind (>= 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed attempts of each kind")
    args = parser.parse_args()
    if args.tries < 50:
        parser.error("--tries must be at least 50")
    with database_url() as url:
        report(asyncio.run(measure(url, args.tries, args.warmup)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
