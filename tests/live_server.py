"""The service as a server: the environment of one started as a child process, the options
`serve` hands uvicorn, a real uvicorn server (`python -m service serve`, through tests/serve.py)
on the wire database, and an SSE reader.

httpx's ASGI transport buffers whole responses, so event streams are tested over real HTTP.
"""

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from pymongo import AsyncMongoClient

import service.__main__ as cli
from service.config import Settings
from service.embedded import free_port
from tests import serve
from tests.conftest import TEST_SECRET_KEY


def server_environment(wire_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a service started as a child process: production mode, the tests'
    secret key, the wire server with a database of its own, `data_dir`; then `settings`."""
    return {
        **os.environ,
        "MONGODB_URL": wire_url,
        "MONGODB_DB": f"test_{uuid.uuid4().hex[:12]}",
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENVIRONMENT": "production",
        "DATA_DIR": str(data_dir),
        **settings,
    }


def serve_options(monkeypatch: pytest.MonkeyPatch, workers: int) -> dict[str, Any]:
    """The keyword arguments `serve` passes uvicorn.run for `workers` (nothing is served and
    no database is asked: only uvicorn's options are under test)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))

    async def reachable(_: Settings) -> None:
        pass

    monkeypatch.setattr(cli, "wait_until_reachable", reachable)
    settings = Settings(
        _env_file=None,
        mongodb_url="mongodb://db.invalid:27017",
        secret_key=SecretStr(TEST_SECRET_KEY),
    )
    cli.serve(settings, "127.0.0.1", 8000, workers)
    (kwargs,) = calls
    return kwargs


@dataclass
class LiveServer:
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@asynccontextmanager
async def live_server(wire_url: str, tmp: Path, **settings: str) -> AsyncIterator[LiveServer]:
    """Serve the app in a child process until the block ends (then SIGTERM it), with the
    tests' cheap password hashing (tests/serve.py)."""
    port = free_port()
    env = server_environment(wire_url, tmp, **{"LOG_LEVEL": "INFO", **settings})
    database = env["MONGODB_DB"]
    log = tmp / f"server-{port}.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *serve.command("serve", "--port", str(port)),
            env=serve.environment(env),
            stdout=output,
            stderr=output,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            for _ in range(600):
                try:
                    if (await client.get("/api/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.returncode is not None:
                    raise RuntimeError(f"server exited: {server.log_text()}")
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"server did not start: {server.log_text()}")
        yield server
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(wire_url)
        await mongo.drop_database(database)
        await mongo.close()


@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comment: str | None = None


@dataclass
class EventReader:
    """Reads SSE frames (and comments) off a streaming httpx response."""

    response: httpx.Response
    _lines: AsyncIterator[str] | None = None
    wait: float = 10.0

    async def next(self) -> Event | None:
        """The next event or comment; None when the server ends the stream."""
        return await asyncio.wait_for(self._next(), self.wait)

    async def _next(self) -> Event | None:
        if self._lines is None:
            self._lines = self.response.aiter_lines()
        current = Event()
        seen_field = False
        async for line in self._lines:
            if line == "":
                if seen_field:
                    return current
                continue
            if line.startswith(":"):
                return Event(event="comment", comment=line[1:].strip())
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            seen_field = True
            if name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "data":
                current.data += value
        return None

    async def next_event(self) -> Event | None:
        """The next event, skipping heartbeat comments."""
        while True:
            event = await self.next()
            if event is None or event.event != "comment":
                return event
