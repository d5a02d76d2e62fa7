"""What the current-user dependency's database read costs per request.

Compares, on the embedded SecantusDB (or MONGODB_URL), interleaved:
  - user only:        `User.get(id)`, what the dependency did before sessions existed;
  - session + $lookup: the one aggregate the dependency runs now (account_store.authenticate);
  - session only:     `Session.get(sid)`, the floor of any design that checks the session;
  - two reads:        `Session.get(sid)` then `User.get(id)`, the naive alternative.

    .venv/bin/python -m bench.auth_read_cost [--rounds 1000] [--others 20000]
"""

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from beanie import PydanticObjectId
from pymongo import AsyncMongoClient

from bench.database_url import database_url
from service.accounts import store as account_store
from service.accounts.models import Session, User
from service.accounts.tokens import new_session_id
from service.core.clock import utc_now
from service.db import init_db


async def measure(url: str, rounds: int, others: int) -> dict[str, list[float]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        await init_db(client[name])
        user = User(email="cost@example.com", fname="C", lname="C", hashed_password="x")
        await user.insert()
        assert user.id is not None
        user_id = user.id
        # Other users' sessions and users, so that a collection scan would show.
        now = utc_now()
        filler = [
            {
                "_id": new_session_id(),
                "user_id": PydanticObjectId(),
                "created_at": now,
                "last_used_at": now,
                "expires_at": now + timedelta(days=1),
                "revoked": False,
                "refresh_hash": f"filler-{i}",
            }
            for i in range(others)
        ]
        for start in range(0, others, 5000):
            await Session.get_pymongo_collection().insert_many(filler[start : start + 5000])
        users = [
            {"email": f"u{i}@example.com", "fname": "F", "lname": "F", "hashed_password": "x"}
            for i in range(others)
        ]
        for start in range(0, others, 5000):
            await User.get_pymongo_collection().insert_many(users[start : start + 5000])
        session_id = new_session_id()
        await account_store.create_session(
            session_id=session_id,
            user_id=user_id,
            refresh_hash="h",
            user_agent="bench",
            ip="127.0.0.1",
            now=utc_now(),
            lifetime=timedelta(days=1),
        )

        async def user_only() -> None:
            assert await User.get(user_id) is not None

        async def combined() -> None:
            now = utc_now()
            found = await account_store.authenticate(
                session_id=session_id, user_id=user_id, now=now
            )
            assert found is not None

        async def session_only() -> None:
            assert await Session.get(session_id) is not None

        async def two_reads() -> None:
            assert await Session.get(session_id) is not None
            assert await User.get(user_id) is not None

        variants: dict[str, Callable[[], Awaitable[None]]] = {
            "user only (before)": user_only,
            "session + $lookup (now)": combined,
            "session only (floor)": session_only,
            "two reads": two_reads,
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(20):  # warm up
            for run in variants.values():
                await run()
        for _ in range(rounds):
            for variant, run in variants.items():
                started = time.perf_counter()
                await run()
                samples[variant].append(time.perf_counter() - started)
        return samples
    finally:
        await client.drop_database(name)
        await client.close()


def report(samples: dict[str, list[float]]) -> None:
    for variant, values in samples.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        print(
            f"{variant:>24}: median {median * 1000:.3f} ms "
            f"(quartiles {q1 * 1000:.3f}-{q3 * 1000:.3f} ms, n={len(values)})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--others", type=int, default=20_000, help="filler sessions and users")
    args = parser.parse_args()
    with database_url() as url:
        report(asyncio.run(measure(url, args.rounds, args.others)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
