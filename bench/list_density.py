"""What a page of 20 costs SecantusDB as a function of how many todos its key range holds.

Starts an in-memory SecantusDB, creates the todos indexes, inserts 50 lists of 200 todos made
in one second (as bench/seed.py's bulk clones are) and one list of 200 todos spread one per 3
hours, and prints the p50 of the listing's query shapes:

    python -m bench.list_density
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from service.embedded import free_port
from service.todos.models import Todo

Query = Callable[[], Awaitable[Any]]


def _id_at(seconds: int, random: bool = True) -> ObjectId:
    """An ObjectId created at `seconds` (Unix time)."""
    return ObjectId(seconds.to_bytes(4, "big") + (os.urandom(8) if random else bytes(8)))


async def _p50(name: str, query: Query, calls: int) -> None:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await query()
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"| {name} | {times[len(times) // 2] * 1000:.2f} |")


def _newest_21(todos: AsyncCollection[dict[str, Any]], query: dict[str, Any]) -> Query:
    return lambda: todos.find(query).sort("_id", -1).limit(21).to_list()


async def measure(port: int, calls: int) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=30000
    )
    todos = client.density.todos
    await client.density.command("ping")
    await todos.create_indexes(Todo.Settings.indexes)
    now = datetime.now(UTC)
    lists = [ObjectId() for _ in range(50)]
    dense = [
        {"list_id": list_id, "sync_lists": [list_id], "deleted_at": None, "text": f"t{number}"}
        for list_id in lists
        for number in range(200)
    ]
    for start in range(0, len(dense), 1000):
        await todos.insert_many(dense[start : start + 1000])
    spread_list, base = ObjectId(), int(now.timestamp())
    await todos.insert_many(
        [
            {"_id": _id_at(base - number * 3 * 3600), "list_id": spread_list, "deleted_at": None}
            for number in range(200)
        ]
    )
    one = lists[7]
    live = {"list_id": one, "deleted_at": None}
    print("| query (p50 of", calls, "calls) | ms |\n|---|---|")
    await _p50(
        "200 todos made in one second: sort `_id` desc, limit 21",
        lambda: todos.find(live).sort("_id", -1).limit(21).to_list(),
        calls,
    )
    await _p50(
        "the same, no sort",
        lambda: todos.find(live).limit(21).to_list(),
        calls,
    )
    for days, label in ((1, "8 todos"), (4, "32 todos")):
        edge = _id_at(base - days * 86400, random=False)
        window = {"list_id": spread_list, "deleted_at": None, "_id": {"$gte": edge}}
        await _p50(
            f"200 todos one per 3 h, a {days}-day `_id` window ({label})",
            _newest_21(todos, window),
            calls,
        )
    await _p50(
        "one todo by `_id`", lambda: todos.find({"_id": dense[1405]["_id"]}).to_list(), calls
    )
    await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    port = free_port()
    server = Path(sys.executable).with_name("secantusd-py")
    process = subprocess.Popen(
        [str(server), "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(measure(port, args.calls))
    finally:
        process.terminate()
        process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
