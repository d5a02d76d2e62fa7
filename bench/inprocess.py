"""The app's own CPU per request, in process: no uvicorn, no wrk, no other client.

Calls the ASGI app directly (one request at a time) against the embedded SecantusDB (or
MONGODB_URL) and divides this process's CPU time (`time.process_time`, every thread) by the
requests. It leaves out uvicorn's share (~0.2 ms a request) and wrk's competition for the
cores; rounds still spread 10-30 % on a shared machine, so compare medians of several.

    .venv/bin/python -m bench.inprocess >/dev/null    # results on stderr; stdout is the log
    .venv/bin/python -m bench.inprocess --auth-cache-ms 0 --scenarios me >/dev/null  # uncached
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager
from pymongo import AsyncMongoClient
from starlette.types import ASGIApp, Message

from bench.database_url import database_url
from service.app import create_app
from service.config import Environment, Settings

Call = Callable[[], Awaitable[tuple[int, bytes]]]
PASSWORD = "correct horse battery"


async def request(
    app: ASGIApp, method: str, path: str, *, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    """One HTTP request straight into the ASGI app: (status, body)."""
    path, _, query = path.partition("?")
    raw = [(b"host", b"bench")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status, chunks = 0, []

    async def receive() -> Message:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # a disconnect never comes
        raise AssertionError

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def scenarios(app: ASGIApp, database: Any, todos: int) -> dict[str, Call]:
    """A user with `todos` todos, logged in, and the requests to measure (and `round-trip`:
    one `find_one` by `_id` through pymongo, no HTTP)."""
    json_type = {"content-type": "application/json"}
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    user = {"email": email, "fname": "B", "lname": "B", "password": PASSWORD}
    status, _ = await request(
        app, "POST", "/api/users", headers=json_type, body=json.dumps(user).encode()
    )
    assert status == 201, status
    form = f"username={email.replace('@', '%40')}&password={PASSWORD.replace(' ', '+')}"
    status, body = await request(
        app,
        "POST",
        "/api/token",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=form.encode(),
    )
    assert status == 200, status
    auth = {"authorization": f"Bearer {json.loads(body)['access_token']}"}
    ids = []
    for i in range(todos):
        todo = json.dumps({"text": f"todo {i}", "tags": ["work"]}).encode()
        status, body = await request(app, "POST", "/api/todos", headers=auth | json_type, body=todo)
        assert status == 201, status
        ids.append(json.loads(body)["id"])
    patch = f"/api/todos/{ids[len(ids) // 2]}"
    user_id = (await database.users.find_one({"email": email}))["_id"]

    async def round_trip() -> tuple[int, bytes]:
        found = await database.users.find_one({"_id": user_id})
        return (200 if found else 404), b""

    return {
        "round-trip": round_trip,
        "health": lambda: request(app, "GET", "/api/health", headers={}),
        "me": lambda: request(app, "GET", "/api/me", headers=auth),
        "list": lambda: request(app, "GET", "/api/todos?limit=20", headers=auth),
        "mytodos": lambda: request(app, "GET", "/api/mytodos?limit=20", headers=auth),
        "create": lambda: request(
            app, "POST", "/api/todos", headers=auth | json_type, body=b'{"text": "bench"}'
        ),
        "patch": lambda: request(
            app, "PATCH", patch, headers=auth | json_type, body=b'{"completed": true}'
        ),
    }


async def measure(url: str, args: argparse.Namespace) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        secret_key=uuid.uuid4().hex * 2,  # type: ignore[arg-type]  # validated into SecretStr
        data_dir=Path(tempfile.mkdtemp()),
        log_level="INFO",  # as shipped: the JSON access line (to stdout) is part of the floor
        # The authentication cache (service/accounts/cache.py) is on by default (1000 ms);
        # 0 measures every request reading its session from the database.
        auth_cache_max_staleness_ms=args.auth_cache_ms,
    )
    try:
        async with LifespanManager(create_app(settings, database=client[name])) as manager:
            calls = await scenarios(manager.app, client[name], args.todos)
            chosen = args.scenarios.split(",") if args.scenarios else list(calls)
            for round_ in range(1, args.rounds + 1):
                floor = None
                for scenario in ["health", *[s for s in chosen if s != "health"]]:
                    call = calls[scenario]
                    for _ in range(50):
                        status, _ = await call()
                        assert status in (200, 201), (scenario, status)
                    started = time.process_time()
                    for _ in range(args.requests):
                        await call()
                    per_request = (time.process_time() - started) / args.requests * 1000
                    floor = floor or per_request
                    print(
                        f"round {round_} {scenario:>8}: {per_request:.3f} ms CPU/request "
                        f"({per_request / floor:.2f}x health)",
                        file=sys.stderr,
                    )
    finally:
        await client.drop_database(name)
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--todos", type=int, default=200, help="the user's todos")
    parser.add_argument(
        "--scenarios", default="", help="round-trip,health,me,list,mytodos,create,patch"
    )
    parser.add_argument(
        "--auth-cache-ms",
        type=int,
        default=Settings.model_fields["auth_cache_max_staleness_ms"].default,
        help="AUTH_CACHE_MAX_STALENESS_MS (0: no cache, every request reads its session)",
    )
    args = parser.parse_args()
    with database_url() as url:
        asyncio.run(measure(url, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
