"""Memory and time of GET /api/export, measured on the service process over a real socket.

Starts SecantusDB (in memory, or file-backed with `--storage file`), then the service as its
own process (`python -m tests.serve serve`: uvicorn as `serve` runs it, the tests' cheap
password hashing), signs up one user per size through the API and puts that many todos in
their lists (at most 10 000 a list, MAX_TODOS_PER_LIST's default: 20 000 todos are two lists),
inserted from this process through todos.service.insert_todos. Then, per size and format, it
reads the export over HTTP and throws the bytes away as they arrive, and prints:

- the service's resident memory before the export and its peak during it (VmHWM, reset with
  /proc/<pid>/clear_refs before each export, so earlier work doesn't count);
- the time to the first byte and to the last, the file's size;
- the CPU seconds the service and the database spent on it, and how far the database's
  peak memory rose over its resident memory before (SecantusDB runs a find whole and keeps
  its result for the cursor's getMores: this grows with the list).

    python -m bench.export_memory                      # 1000 10000 20000, in-memory database
    python -m bench.export_memory --storage file 10000
    python -m bench.export_memory --formats json 1000 10000 20000

Then (`--stall`, 3 s) a client reads 100 kB of the largest export, stops reading, and leaves:
it prints the database's open cursors before, while it stalls and after it left.

The export holds one batch of todos (exports.BATCH_SIZE) at a time: the peak should stay
about the same whatever the size, while the file grows with it. (httpx's in-process ASGI
transport buffers the whole response body, so an in-process measurement counts the file
itself: this one doesn't.) Linux only (/proc).
"""

import argparse
import asyncio
import math
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from beanie import PydanticObjectId
from pymongo import AsyncMongoClient

from bench.procstat import cpu_seconds
from service.app import create_app
from service.config import Settings
from service.embedded import EmbeddedDatabase, free_port
from service.todos import service as todos
from tests import serve
from tests.live_server import server_environment
from tests.utils import UserAccount, app_client, create_account, create_list

INSERT_BATCH = 1000
LIST_SIZE = 10_000
SAMPLE_SECONDS = 0.005


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak(pid: int) -> None:
    # "5" resets VmHWM to the current RSS (Linux 4.0+).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Server:
    url: str
    pid: int
    database: str
    log: Path


@asynccontextmanager
async def service_process(wire_url: str, tmp: Path) -> AsyncIterator[Server]:
    port = free_port()
    env = server_environment(wire_url, tmp, LOG_LEVEL="WARNING")
    log = tmp / "server.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *serve.command("serve", "--port", str(port)),
            env=serve.environment(env),
            stdout=output,
            stderr=output,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(600):
                try:
                    if (await client.get("/api/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.returncode is not None:
                    raise RuntimeError(log.read_text())
                await asyncio.sleep(0.05)
        yield Server(url, process.pid, env["MONGODB_DB"], log)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def seed(client: httpx.AsyncClient, size: int) -> UserAccount:
    """A new user with `size` todos, in their default list and as many more as it takes."""
    for attempt in range(5):
        try:
            user = await create_account(client)
            break
        except AssertionError:  # a 503 on a busy machine (the signup's database budget)
            if attempt == 4:
                raise
            await asyncio.sleep(1)
    owner = PydanticObjectId(user.id)
    lists = [owner]
    for n in range(1, math.ceil(size / LIST_SIZE)):
        made = await create_list(client, user, f"list {n}")
        lists.append(PydanticObjectId(made["id"]))
    for start in range(0, size, INSERT_BATCH):
        batch = [
            (PydanticObjectId(), {"text": f"todo {n} " + "x" * 80, "notes": "n" * 100})
            for n in range(start, min(size, start + INSERT_BATCH))
        ]
        await todos.insert_todos(list_id=lists[start // LIST_SIZE], created_by=owner, todos=batch)
    return user


@dataclass
class Measured:
    received: int
    first_byte: float
    took: float
    rss_before_mb: float
    peak_mb: float
    service_cpu: float
    database_cpu: float
    database_growth_mb: float


async def export_once(
    client: httpx.AsyncClient, server: Server, db_pid: int, user: UserAccount, fmt: str
) -> Measured:
    before = _status_kb(server.pid, "VmRSS")
    db_before = _status_kb(db_pid, "VmRSS")
    _reset_peak(server.pid)
    _reset_peak(db_pid)
    cpu = cpu_seconds(server.pid), cpu_seconds(db_pid)
    started = time.perf_counter()
    first_byte = 0.0
    received = 0
    async with client.stream(
        "GET", "/api/export", params={"format": fmt}, headers=user.headers
    ) as response:
        assert response.status_code == 200, response.status_code
        async for chunk in response.aiter_raw():
            if not received:
                first_byte = time.perf_counter() - started
            received += len(chunk)  # and dropped: the client holds no more than a chunk
    took = time.perf_counter() - started
    return Measured(
        received=received,
        first_byte=first_byte,
        took=took,
        rss_before_mb=before / 1024,
        peak_mb=_status_kb(server.pid, "VmHWM") / 1024,
        service_cpu=cpu_seconds(server.pid) - cpu[0],
        database_cpu=cpu_seconds(db_pid) - cpu[1],
        database_growth_mb=(_status_kb(db_pid, "VmHWM") - db_before) / 1024,
    )


async def settle(db_pid: int, limit: float = 60.0) -> None:
    """Wait (up to `limit` s) until the database is idle: after the seeding it keeps working
    for a while (its CPU then showed in the first export's: 7.8 s instead of ~1 s)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(db_pid)
        await asyncio.sleep(1)
        if cpu_seconds(db_pid) - before < 0.05:
            return


async def open_cursors(wire_url: str) -> int:
    """The database's open cursors (serverStatus; the service's change streams count too)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url)
    try:
        status = await client.admin.command("serverStatus")
        total: int = status["metrics"]["cursor"]["open"]["total"]
        return total
    finally:
        await client.close()


async def stalled_client(wire_url: str, server: Server, user: UserAccount, stall: float) -> None:
    """A client that reads 100 kB of the export, stops reading for `stall` seconds, then
    disconnects: the service's cursor stays open while it stalls and is killed when it goes.
    Its receive buffer is made small: loopback's would take the whole file at once."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    before = await open_cursors(wire_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    request = f"GET /api/export HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {user.token}"
    writer.write(request.encode() + b"\r\n\r\n")
    await writer.drain()
    received = 0
    while received < 100_000:
        received += len(await reader.read(65536))
    await asyncio.sleep(stall)
    stalled = await open_cursors(wire_url)
    writer.close()
    await asyncio.sleep(1)
    after = await open_cursors(wire_url)
    errors = [line for line in server.log.read_text(errors="replace").splitlines() if line]
    print(
        f"stalled client: open cursors {before} before, {stalled} after {stall:.0f} s stalled, "
        f"{after} 1 s after it disconnected; server log lines (WARNING and up): {len(errors)}"
    )


async def measure(
    wire_url: str, db_pid: int, sizes: list[int], formats: list[str], stall: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with service_process(wire_url, Path(tmp)) as server:
            settings = Settings(
                _env_file=None,
                environment="development",  # type: ignore[arg-type]  # validated into Environment
                mongodb_url=wire_url,
                mongodb_db=server.database,
                auth_cache_max_staleness_ms=0,
                data_dir=Path(tmp),
                # A timed-out insert of 1000 is retried and fails on its own first half (a
                # duplicate _id) when the machine is busy: give the seeding time instead.
                mongodb_socket_timeout_ms=300_000,
            )
            # This process writes the todos (Beanie initialised by the app's lifespan); the
            # service process only serves the exports.
            async with (
                app_client(create_app(settings)),
                httpx.AsyncClient(base_url=server.url, timeout=120) as client,
            ):
                users = {size: await seed(client, size) for size in sizes}
                await settle(db_pid)
                # The first export of a process pays for imports and warm-ups: not measured.
                await export_once(client, server, db_pid, users[min(sizes)], formats[0])
                print(
                    "| todos | lists | format | file | first byte | time | service RSS before "
                    "| service peak RSS | peak - before | service CPU | database CPU "
                    "| database peak - before |"
                )
                print("|---|---|---|---|---|---|---|---|---|---|---|---|")
                for size in sizes:
                    for fmt in formats:
                        try:
                            m = await export_once(client, server, db_pid, users[size], fmt)
                        except httpx.HTTPError as error:  # cut short: say why, go on
                            last = server.log.read_text(errors="replace").splitlines()[-3:]
                            print(f"| {size} | | {fmt} | failed: {error!r} {last} |")
                            continue
                        print(
                            f"| {size} | {math.ceil(size / LIST_SIZE)} | {fmt} "
                            f"| {m.received / 1e6:.1f} MB | {m.first_byte * 1000:.0f} ms "
                            f"| {m.took:.2f} s | {m.rss_before_mb:.1f} MB | {m.peak_mb:.1f} MB "
                            f"| {m.peak_mb - m.rss_before_mb:+.1f} MB | {m.service_cpu:.2f} s "
                            f"| {m.database_cpu:.2f} s | {m.database_growth_mb:+.1f} MB |",
                            flush=True,
                        )
                if stall:
                    await stalled_client(wire_url, server, users[max(sizes)], stall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10_000, 20_000])
    parser.add_argument("--storage", choices=["memory", "file"], default="memory")
    parser.add_argument("--formats", default="json,csv", help="comma-separated: json,csv")
    parser.add_argument(
        "--stall",
        type=float,
        default=3.0,
        help="then a client that stops reading for this many seconds and leaves (0: none)",
    )
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    with tempfile.TemporaryDirectory() as data:
        path = ":memory:" if args.storage == "memory" else Path(data) / f"db-{uuid.uuid4().hex}"
        # As `serve` runs the embedded database: file-backed with sync on commit.
        with EmbeddedDatabase(path, sync_on_commit=args.storage == "file") as database:
            pid = database.pid
            assert pid is not None  # started here, not found running
            print(f"SecantusDB {args.storage}, batch of {INSERT_BATCH} inserts per round trip")
            asyncio.run(measure(database.url, pid, sorted(args.sizes), formats, args.stall))


if __name__ == "__main__":
    main()
