"""How long reading one list of N todos takes on SecantusDB, by query shape (the export's).

Starts SecantusDB (in memory, or file-backed with `--storage file`), puts N todos in one list
(todos.service.insert_todos, as bench/export_memory.py), then reads them all in `_id` order:

- `pages`: a find per page of 500, `_id > last` (the export before: each page's find makes
  SecantusDB fetch the rest of the list before it sorts and applies the limit);
- `cursor`: one find, read 500 a batch by getMore (the export now);
- `windows`: a find per `_id` window holding 500 (the boundaries known beforehand, which an
  export doesn't know: the floor of bounded windows).

It prints each one's time, its first read's, and the database's resident memory (VmRSS)
after it:

    python -m bench.export_queries 10000
"""

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pymongo
from beanie import PydanticObjectId

from service.app import create_app
from service.config import Settings
from service.embedded import EmbeddedDatabase
from service.todos import service as todos
from service.todos.models import Todo
from tests.utils import app_client, create_account

BATCH = 500
Reads = list[float]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmRSS")


async def measure(url: str, db_pid: int, size: int) -> None:
    settings = Settings(
        _env_file=None,
        environment="development",  # type: ignore[arg-type]  # validated into Environment
        mongodb_url=url,
        mongodb_db="export_queries",
        auth_cache_max_staleness_ms=0,
        data_dir=Path(tempfile.mkdtemp()),
        mongodb_socket_timeout_ms=300_000,
    )
    async with app_client(create_app(settings)) as client:
        owner = PydanticObjectId((await create_account(client)).id)
        for start in range(0, size, 1000):
            batch = [
                (PydanticObjectId(), {"text": f"todo {n} " + "x" * 80, "notes": "n" * 100})
                for n in range(start, min(size, start + 1000))
            ]
            await todos.insert_todos(list_id=owner, created_by=owner, todos=batch)
        collection = Todo.get_pymongo_collection()
        live: dict[str, Any] = {"list_id": owner, "deleted_at": None}
        order = [("_id", pymongo.ASCENDING)]

        async def pages(reads: Reads) -> int:
            after, count = None, 0
            while True:
                query = live if after is None else {**live, "_id": {"$gt": after}}
                started = time.perf_counter()
                page = await collection.find(query, sort=order, limit=BATCH).to_list(None)
                reads.append(time.perf_counter() - started)
                count += len(page)
                if len(page) < BATCH:
                    return count
                after = page[-1]["_id"]

        async def cursor(reads: Reads) -> int:
            found = collection.find(live, sort=order, batch_size=BATCH)
            count = 0
            while True:
                started = time.perf_counter()
                batch = await found.to_list(BATCH)
                reads.append(time.perf_counter() - started)
                count += len(batch)
                if len(batch) < BATCH:
                    return count

        ids = [d["_id"] for d in await collection.find(live, {"_id": 1}, sort=order).to_list()]

        async def windows(reads: Reads) -> int:
            count = 0
            for at in range(0, len(ids), BATCH):
                bounds: dict[str, Any] = {"$gte": ids[at]}
                if at + BATCH < len(ids):
                    bounds["$lt"] = ids[at + BATCH]
                started = time.perf_counter()
                count += len(await collection.find({**live, "_id": bounds}, sort=order).to_list())
                reads.append(time.perf_counter() - started)
            return count

        shapes: dict[str, Callable[[Reads], Awaitable[int]]] = {
            "pages": pages,
            "cursor": cursor,
            "windows": windows,
        }
        print(f"| shape ({size} todos) | time | reads | first read | database RSS after |")
        print("|---|---|---|---|---|")
        for name, shape in shapes.items():
            reads: Reads = []
            started = time.perf_counter()
            count = await shape(reads)
            took = time.perf_counter() - started
            assert count == size, (name, count)
            print(
                f"| {name} | {took:.2f} s | {len(reads)} | {reads[0] * 1000:.0f} ms "
                f"| {_rss_mb(db_pid):.0f} MB |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", type=int, default=10_000)
    parser.add_argument("--storage", choices=["memory", "file"], default="memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        path = ":memory:" if args.storage == "memory" else Path(data) / "db"
        with EmbeddedDatabase(path, sync_on_commit=args.storage == "file") as database:
            assert database.pid is not None
            asyncio.run(measure(database.url, database.pid, args.size))


if __name__ == "__main__":
    main()
