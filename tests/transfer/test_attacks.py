"""Regressions found by attacking export and import from the outside (issue 14 review)."""

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from pymongo.errors import PyMongoError

from service.core.budget import budgeted
from service.todos import service as todos_service
from tests.transfer.conftest import export_csv, export_file, stored_state, todo
from tests.utils import UserAccount, create_list, create_todo

# Each todo insert of the import below spends this much of its database budget, as a slow
# database would; five of them outlast one budget, one of them doesn't.
SLOW_WRITE_SECONDS = 0.3
ONE_BUDGET = {"request_db_budget_ms": 1000}


@budgeted
async def _slow_database() -> None:
    await asyncio.sleep(SLOW_WRITE_SECONDS)


def _slow_inserts(monkeypatch: pytest.MonkeyPatch, *, fail_at: int | None = None) -> None:
    real = todos_service.insert_todos
    calls = 0

    async def slow_insert(**kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        await _slow_database()
        if calls == fail_at:
            raise PyMongoError("boom")
        await real(**kwargs)

    monkeypatch.setattr(todos_service, "insert_todos", slow_insert)


def _five_lists() -> dict[str, Any]:
    return export_file(*({"name": f"L{i}", "todos": [todo(f"t{i}")]} for i in range(5)))


@pytest.mark.parametrize("settings_overrides", [ONE_BUDGET])
async def test_an_import_longer_than_one_request_budget_is_written_whole(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: every write of the file shared the request's one budget (`@unbudgeted` only
    # marks), so a file of many lists ran it out: 503 with half of it left behind.
    _slow_inserts(monkeypatch)
    response = await client.post("/api/import", json=_five_lists(), headers=alice.headers)
    assert response.status_code == 201, response.text
    assert response.json() == {"lists": 5, "todos": 5}


@pytest.mark.parametrize("settings_overrides", [ONE_BUDGET])
async def test_the_undo_of_a_long_import_has_a_budget_to_undo_with(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the undo ran on what was left of the request's budget, nothing after a long
    # import, and its failures are suppressed: lists, todos and list slots stayed taken.
    await create_todo(client, alice, "already here")
    before = await stored_state()
    _slow_inserts(monkeypatch, fail_at=5)
    response = await client.post("/api/import", json=_five_lists(), headers=alice.headers)
    assert response.status_code >= 500
    assert await stored_state() == before


@pytest.mark.parametrize("start", ["\x00=", " =", "\u00a0=", "\n=", "\u200b=", "\ufeff@", " \t+"])
async def test_csv_prefixes_formulas_hidden_behind_white_space_or_nul(
    client: AsyncClient, alice: UserAccount, start: str
) -> None:
    # Notes are not trimmed; text and names are, but not of NUL or zero-width characters.
    await create_todo(client, alice, "x", notes=f"{start}1+1")
    await create_todo(client, alice, f"{start}HYPERLINK(1)")
    listed = await create_list(client, alice, f"\u200b{start}SUM(A1)")
    await create_todo(client, alice, "in the list", list_id=listed["id"])
    rows = await export_csv(client, alice)
    assert rows[1][3] == f"'{start}1+1"
    assert rows[2][2].startswith("'")
    assert rows[3][0].startswith("'")
