"""Export and import tests: reading an export back, and the state an import leaves."""

import asyncio
import csv
import io
import json
from typing import Any

import pytest
from httpx import AsyncClient
from pymongo.errors import PyMongoError
from starlette.types import ASGIApp, Message, Scope

from service.core.budget import RequestBudget, current_budget
from service.lists.models import Membership, TodoList
from service.todos import service as todos_service
from service.todos.models import Todo
from tests.utils import UserAccount


async def export_json(client: AsyncClient, user: UserAccount) -> dict[str, Any]:
    response = await client.get("/api/export", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = json.loads(response.content)
    return body


async def export_csv(client: AsyncClient, user: UserAccount) -> list[list[str]]:
    response = await client.get("/api/export", params={"format": "csv"}, headers=user.headers)
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text, newline="")))


async def stored_state() -> list[list[dict[str, Any]]]:
    """Every live list, membership and todo as stored, to check that a refused import left
    nothing behind (tombstones aside: undone writes are reported to sync as deletions)."""
    live = {
        TodoList: {"deleted_at": None},
        Membership: {"removed_at": None},
        Todo: {"deleted_at": None},
    }
    state = []
    for document, query in live.items():
        found = await document.get_pymongo_collection().find(query, sort=[("_id", 1)]).to_list(None)
        state.append(found)
    return state


def todo(text: str = "buy milk", **fields: Any) -> dict[str, Any]:
    return {"text": text, **fields}


def export_file(*lists: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "lists": list(lists)}


class RecordingReader(todos_service.LiveTodos):
    """LiveTodos that notes, in `events`, each batch read (with the database budget it ran on)
    and each close; installed by `recording_readers`."""

    made: list["RecordingReader"]
    events: list[str]
    budgets: list[RequestBudget | None]
    budgets_left: list[float | None]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.made.append(self)
        self.closes = 0
        # The server's ids of the cursors it read from (the wire tier's; mongomock has none).
        self.cursor_ids: list[int] = []

    async def next_batch(self) -> list[dict[str, Any]]:
        budget = current_budget()
        self.budgets.append(budget)
        self.budgets_left.append(None if budget is None else budget.remaining)
        batch = await super().next_batch()
        self.events.append(f"read {len(batch)}")
        cursor_id = getattr(self._cursor, "cursor_id", None)
        if cursor_id and cursor_id not in self.cursor_ids:
            self.cursor_ids.append(cursor_id)
        return batch

    async def close(self) -> None:
        await super().close()
        self.closes += 1
        self.events.append("close")


@pytest.fixture
def recording_readers(monkeypatch: pytest.MonkeyPatch) -> type[RecordingReader]:
    """Every LiveTodos the export makes is a RecordingReader; they share `events`."""
    shared: dict[str, list[Any]] = {"made": [], "events": [], "budgets": [], "budgets_left": []}
    reader = type("Recording", (RecordingReader,), shared)
    monkeypatch.setattr(todos_service, "LiveTodos", reader)
    return reader


async def export_over_asgi(
    app: ASGIApp, user: UserAccount, events: list[str], *, leave_after: str | None = None
) -> list[Message]:
    """GET /api/export called as uvicorn calls the app (ASGI 2.3, so starlette listens for the
    client's disconnect), noting each body chunk sent in `events` ("chunk" and its text).

    With `leave_after`, the client stops reading at the first chunk holding that text (the
    send never returns, as when the socket's buffers are full) and then disconnects.
    httpx's ASGI transport can do neither: it reads the whole body, then disconnects."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/export",
        "raw_path": b"/api/export",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {user.token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    sent: list[Message] = []
    gone = asyncio.Event()
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] != "http.response.body":
            return
        text = bytes(message.get("body", b"")).decode()
        events.append(f"chunk {text}")
        if leave_after is not None and leave_after in text:
            gone.set()
            await asyncio.Event().wait()  # never read

    if leave_after is None:
        await app(scope, receive, send)
        gone.set()
    else:
        await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


def fail_second_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second `insert_todos` of an import fails as a database error would."""
    real = todos_service.insert_todos
    calls = 0

    async def failing_second(**kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise PyMongoError("boom")
        await real(**kwargs)

    monkeypatch.setattr(todos_service, "insert_todos", failing_second)
