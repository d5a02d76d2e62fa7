"""Export and import tests: reading an export back, and the state an import leaves."""

import csv
import io
import json
from typing import Any

from httpx import AsyncClient

from service.lists.models import Membership, TodoList
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
