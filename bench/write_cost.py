"""SecantusDB's CPU per todo write, with and without the change feed watching.

Each mode starts its own in-memory SecantusDB (`secantusd-py`), then times N inserts (and N
updates of those todos) sent with pymongo, reading utime+stime of the server process from
/proc/<pid>/stat around them: the database's CPU per write, nothing of the client's.

Modes:
- `none`: the service's app started (so the todos collection has its indexes, which cost more
  per write than any stream), then its change feed stopped: no change stream, the floor;
- `idle`: the service's app running (its lifespan: the change feed started), nobody subscribed
  (measured once the feed has settled: a feed that closes its idle todo stream has closed it);
- `subscribed`: the same with one subscriber who reads the list the todos are written to;
- `bare`: a collection without the service's indexes and no stream, the floor of:
- `raw-lookup` / `raw-plain`: one bare todos change stream with / without updateLookup, read
  by this process (what one stream costs, whatever the feed does with it);
- `raw-control`: one database-wide stream filtered to sessions, memberships and lists (the
  shape of the feed's control stream), which no todo write matches.

    .venv/bin/python -m bench.write_cost                    # none, idle, subscribed: 2000 writes
    .venv/bin/python -m bench.write_cost --modes none,idle --writes 1000 --rounds 3

The `service` package measured is the one on the path: `PYTHONPATH=/other/tree .venv/bin/python
bench/write_cost.py` measures another checkout's feed (its bench/procstat.py is used too). The
machine's other load shows: take the median of a few rounds.
"""

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.change_stream import AsyncChangeStream

from bench.procstat import cpu_seconds
from service.app import create_app
from service.config import Environment, Settings

MODES = ["none", "idle", "subscribed", "bare", "raw-plain", "raw-lookup", "raw-control"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def secantusd() -> Iterator[tuple[str, int]]:
    """A fresh in-memory SecantusDB: (url, pid)."""
    binary = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true", process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_up(client: AsyncMongoClient[dict[str, Any]]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await client.admin.command("ping")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _todo(list_id: ObjectId, n: int) -> dict[str, Any]:
    now = time.time()
    return {
        "_id": ObjectId(),
        "list_id": list_id,
        "created_by": list_id,
        "sync_lists": [list_id],
        "text": f"todo {n}",
        "notes": "",
        "completed": False,
        "completed_at": None,
        "priority": 0,
        "tags": [],
        "due": None,
        "due_at": None,
        "due_rank": 1,
        "version": 1,
        "deleted_at": None,
        "created_at": now,
        "updated_at": now,
    }


async def _writes(database: Any, pid: int, list_id: ObjectId, count: int) -> tuple[float, float]:
    """(ms of database CPU per insert, per update) over `count` of each, one at a time."""
    todos = database.todos
    documents = [_todo(list_id, n) for n in range(count)]
    await asyncio.sleep(1.0)  # let the streams settle
    before = cpu_seconds(pid)
    for document in documents:
        await todos.insert_one(document)
    inserted = cpu_seconds(pid)
    for document in documents:
        await todos.update_one({"_id": document["_id"]}, {"$set": {"completed": True}})
    updated = cpu_seconds(pid)
    return (inserted - before) * 1000 / count, (updated - inserted) * 1000 / count


@contextlib.asynccontextmanager
async def _mode(
    mode: str, client: AsyncMongoClient[dict[str, Any]], name: str, list_id: ObjectId
) -> AsyncIterator[list[int]]:
    """Run what `mode` watches while inside; yields a one-item list counting the events a
    subscriber (or the raw stream's reader) received."""
    received = [0]
    database = client[name]
    if mode == "bare":
        yield received
        return
    if mode.startswith("raw-"):
        stream: AsyncChangeStream[dict[str, Any]]
        if mode == "raw-control":
            # A database-wide stream filtered on the server to other collections, as the
            # feed's control stream is (it never returns a todo change).
            wanted = {"$match": {"ns.coll": {"$in": ["sessions", "memberships", "lists"]}}}
            stream = await database.watch([wanted], max_await_time_ms=500)
        else:
            full_document = "updateLookup" if mode == "raw-lookup" else None
            stream = await database.todos.watch(max_await_time_ms=500, full_document=full_document)

        async def read() -> None:
            while stream.alive:
                if await stream.try_next() is not None:
                    received[0] += 1

        task = asyncio.create_task(read())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await stream.close()
        return
    settings = Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        secret_key=uuid.uuid4().hex * 2,  # type: ignore[arg-type]  # validated into SecretStr
        data_dir=Path(tempfile.mkdtemp()),
        log_level="WARNING",
    )
    app = create_app(settings, database=database)
    async with LifespanManager(app) as manager:
        feed = manager._state["feed"]  # what the lifespan handed to requests
        if not feed.available:
            raise SystemExit("the feed did not start (no change streams?)")
        if mode == "none":
            await feed.stop()  # the service's indexes, no change stream
            yield received
            return
        if mode != "subscribed":
            await _settled(feed)
            if getattr(feed, "_stream", None) is not None:
                print(f"({mode}: the feed's todo stream is open)", file=sys.stderr)
            yield received
            return
        # As ChangeFeed.open does (a feed that closes its idle todo stream opens it first).
        if hasattr(feed, "ensure_running"):
            await feed.ensure_running()
        subscription = feed.subscribe(list_id, lists=[list_id])

        async def drain() -> None:
            while await subscription.queue.get() is not None:
                received[0] += 1

        task = asyncio.create_task(drain())
        try:
            yield received
        finally:
            feed.unsubscribe(subscription)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _settled(feed: Any) -> None:
    """Wait until a feed that closes its todo stream when nobody subscribes has closed it
    (IDLE_CLOSE_SECONDS after its start): the steady state of an idle worker."""
    grace = getattr(sys.modules[type(feed).__module__], "IDLE_CLOSE_SECONDS", None)
    if grace is None:
        return  # a feed that keeps its stream open
    for _ in range(int(grace + 10) * 2):
        if getattr(feed, "_stream", None) is None:
            return
        await asyncio.sleep(0.5)


async def measure(mode: str, count: int) -> tuple[float, float, int]:
    with secantusd() as (url, pid):
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
        try:
            await _wait_up(client)
            name = f"bench_{uuid.uuid4().hex[:12]}"
            list_id = ObjectId()
            async with _mode(mode, client, name, list_id) as received:
                per_insert, per_update = await _writes(client[name], pid, list_id, count)
                await asyncio.sleep(1.0)  # the last events reach the reader
                return per_insert, per_update, received[0]
        finally:
            await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES[:3]), help=f"of {','.join(MODES)}")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print("| mode | DB ms CPU / insert | DB ms CPU / update | events received |")
    print("|---|---|---|---|")
    for mode in args.modes.split(","):
        samples = [asyncio.run(measure(mode, args.writes)) for _ in range(args.rounds)]
        inserts = statistics.median(sample[0] for sample in samples)
        updates = statistics.median(sample[1] for sample in samples)
        print(f"| {mode} | {inserts:.2f} | {updates:.2f} | {samples[-1][2]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
