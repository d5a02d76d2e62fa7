"""GET /api/export: the caller's readable lists and their live todos, as JSON or CSV."""

import logging
from typing import Any

import pytest
from httpx import AsyncClient
from starlette.types import ASGIApp

from service.todos.models import Todo
from tests.transfer.conftest import RecordingReader, export_csv, export_json, export_over_asgi
from tests.utils import UserAccount, create_account, create_list, create_todo, share_list


async def test_json_export_holds_every_readable_list_with_its_live_todos(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    await create_todo(client, alice, "in the inbox", due="2026-12-01", tags=["a", "b"])
    gone = await create_todo(client, alice, "deleted")
    deleted = await client.delete(f"/api/todos/{gone['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    shared = await create_list(client, bob, "Bob's")
    await share_list(client, bob, shared["id"], alice, "viewer")
    await create_todo(client, bob, "bob's todo", list_id=shared["id"])
    await create_todo(client, bob, "bob's private todo")

    body = await export_json(client, alice)

    assert body["version"] == 1
    assert body["exported_at"].endswith("Z")
    assert [(each["name"], each["role"], each["default"]) for each in body["lists"]] == [
        ("Inbox", "owner", True),
        ("Bob's", "viewer", False),
    ]
    inbox, bobs = body["lists"]
    assert [t["text"] for t in inbox["todos"]] == ["in the inbox"]
    assert inbox["todos"][0]["due"] == "2026-12-01"
    assert inbox["todos"][0]["tags"] == ["a", "b"]
    assert "list_id" not in inbox["todos"][0]
    assert [t["text"] for t in bobs["todos"]] == ["bob's todo"]


@pytest.mark.parametrize(
    ("export_format", "media"), [("json", "application/json"), ("csv", "text/csv")]
)
async def test_export_names_its_file(
    client: AsyncClient, alice: UserAccount, export_format: str, media: str
) -> None:
    response = await client.get(
        "/api/export", params={"format": export_format}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="todos-')
    assert disposition.endswith(f'.{export_format}"')


async def test_export_of_a_list_longer_than_a_page_has_every_todo_in_order(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.transfer.exports.BATCH_SIZE", 2)
    for n in range(5):
        await create_todo(client, alice, f"todo {n}")
    body = await export_json(client, alice)
    assert [t["text"] for t in body["lists"][0]["todos"]] == [f"todo {n}" for n in range(5)]
    rows = await export_csv(client, alice)
    assert [row[2] for row in rows[1:]] == [f"todo {n}" for n in range(5)]


async def test_csv_has_a_header_and_one_row_per_todo_list_name_first(
    client: AsyncClient, alice: UserAccount
) -> None:
    await create_todo(client, alice, "plain", priority=2, tags=["x", "y"], completed=True)
    rows = await export_csv(client, alice)
    assert rows[0] == [
        "list",
        "role",
        "text",
        "notes",
        "completed",
        "completed_at",
        "due",
        "priority",
        "tags",
        "created_at",
        "updated_at",
    ]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert (row["list"], row["role"], row["text"], row["completed"]) == (
        "Inbox",
        "owner",
        "plain",
        "true",
    )
    assert (row["priority"], row["tags"], row["due"]) == ("2", "x y", "")
    assert row["completed_at"].endswith("Z")


async def test_csv_survives_commas_quotes_and_newlines(
    client: AsyncClient, alice: UserAccount
) -> None:
    text = 'say "hi", then\nleave'
    await create_todo(client, alice, text, notes="a,b\r\nc")
    rows = await export_csv(client, alice)
    assert rows[1][2:4] == [text, "a,b\r\nc"]


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
async def test_csv_prefixes_formula_looking_cells(
    client: AsyncClient, alice: UserAccount, start: str
) -> None:
    await create_todo(client, alice, f'{start}HYPERLINK("http://x")', notes=f"{start}1+1")
    listed = await create_list(client, alice, f"{start}SUM(A1)")
    await create_todo(client, alice, "in the formula list", list_id=listed["id"])
    rows = await export_csv(client, alice)
    assert rows[1][2] == f'\'{start}HYPERLINK("http://x")'
    assert rows[1][3] == f"'{start}1+1"
    assert rows[2][0] == f"'{start}SUM(A1)"


async def test_export_of_an_account_with_nothing_is_its_empty_default_list(
    client: AsyncClient,
) -> None:
    carol = await create_account(client)
    body = await export_json(client, carol)
    assert body["lists"] == [{"name": "Inbox", "role": "owner", "default": True, "todos": []}]
    assert len(await export_csv(client, carol)) == 1


async def test_export_needs_a_token(client: AsyncClient) -> None:
    response = await client.get("/api/export")
    assert response.status_code == 401


async def test_an_unknown_format_is_422(client: AsyncClient, alice: UserAccount) -> None:
    response = await client.get("/api/export", params={"format": "xml"}, headers=alice.headers)
    assert response.status_code == 422


@pytest.mark.parametrize("settings_overrides", [{"export_batch_db_budget_ms": 4321}])
async def test_each_batch_of_the_stream_has_its_own_database_budget(
    client: AsyncClient,
    alice: UserAccount,
    monkeypatch: pytest.MonkeyPatch,
    recording_readers: type[RecordingReader],
) -> None:
    # One request budget for the whole stream ran out at 10 000 todos (bench/export_memory.py).
    monkeypatch.setattr("service.transfer.exports.BATCH_SIZE", 1)
    for n in range(3):
        await create_todo(client, alice, f"todo {n}")
    await export_json(client, alice)
    budgets = recording_readers.budgets
    assert len(budgets) == 4  # three batches of one, then an empty one
    assert recording_readers.budgets_left == [4.321] * 4  # EXPORT_BATCH_DB_BUDGET_MS each
    assert len({id(budget) for budget in budgets}) == len(budgets)


async def test_the_export_is_sent_while_the_list_is_still_being_read(
    running_app: ASGIApp,
    client: AsyncClient,
    alice: UserAccount,
    monkeypatch: pytest.MonkeyPatch,
    recording_readers: type[RecordingReader],
) -> None:
    monkeypatch.setattr("service.transfer.exports.BATCH_SIZE", 2)
    for n in range(5):
        await create_todo(client, alice, f"todo {n}")
    events = recording_readers.events
    await export_over_asgi(running_app, alice, events)
    reads = [i for i, event in enumerate(events) if event.startswith("read")]
    first_todo = next(i for i, event in enumerate(events) if "todo 0" in event)
    assert len(reads) == 3  # 2 + 2 + 1: the short batch ends the list
    assert reads[0] < first_todo < reads[1]


async def test_a_client_gone_mid_export_has_its_cursor_closed_and_no_error_logged(
    running_app: ASGIApp,
    client: AsyncClient,
    alice: UserAccount,
    tier: str,
    monkeypatch: pytest.MonkeyPatch,
    recording_readers: type[RecordingReader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("service.transfer.exports.BATCH_SIZE", 2)
    for n in range(5):
        await create_todo(client, alice, f"todo {n}")
    events = recording_readers.events
    with caplog.at_level(logging.INFO):
        sent = await export_over_asgi(running_app, alice, events, leave_after="todo 0")
    assert sent[0]["status"] == 200
    (reader,) = recording_readers.made
    # Closed by the time the app returned, not whenever the garbage collector gets to it.
    assert reader.closes == 1
    assert [event for event in events if not event.startswith("chunk")] == ["read 2", "close"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    if tier == "wire":
        # The server no longer knows the cursor: it was killed, not left to time out.
        (cursor_id,) = reader.cursor_ids
        answer = await Todo.get_pymongo_collection().database.command(
            "killCursors", Todo.get_collection_name(), cursors=[cursor_id]
        )
        assert answer["cursorsNotFound"] == [cursor_id]


@pytest.mark.wire_only
async def test_an_export_goes_on_after_the_server_drops_its_cursor(
    client: AsyncClient,
    alice: UserAccount,
    monkeypatch: pytest.MonkeyPatch,
    recording_readers: type[RecordingReader],
) -> None:
    # What the server does to the cursor of a client that reads slower than its idle timeout.
    monkeypatch.setattr("service.transfer.exports.BATCH_SIZE", 2)
    for n in range(5):
        await create_todo(client, alice, f"todo {n}")
    real = recording_readers.next_batch
    killed: list[int] = []

    async def dropping(self: RecordingReader) -> list[dict[str, Any]]:
        batch = await real(self)
        if not killed:
            killed.extend(self.cursor_ids)
            answer = await Todo.get_pymongo_collection().database.command(
                "killCursors", Todo.get_collection_name(), cursors=killed
            )
            assert answer["cursorsKilled"] == killed
        return batch

    monkeypatch.setattr(recording_readers, "next_batch", dropping)
    body = await export_json(client, alice)
    assert [t["text"] for t in body["lists"][0]["todos"]] == [f"todo {n}" for n in range(5)]
    assert len(recording_readers.budgets) == 3
