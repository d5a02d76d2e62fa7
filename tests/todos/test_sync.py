"""Tombstones, clear-completed and delta sync (updated_since, include_deleted, watermark)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from service.config import Environment, Settings
from service.todos.models import Todo
from tests.conftest import TEST_SECRET_KEY
from tests.utils import UserAccount, create_todo

LONG_AGO = "2000-01-01T00:00:00Z"


@pytest.fixture
def sync_lag_ms() -> int:
    return 0


@pytest.fixture
def settings(tmp_path: Path, sync_lag_ms: int) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.PRODUCTION,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]  # validated into SecretStr
        data_dir=tmp_path,
        sync_lag_ms=sync_lag_ms,
    )


def since(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


def recently() -> str:
    return since(datetime.now(UTC) - timedelta(minutes=5))


async def changes(client: AsyncClient, user: UserAccount, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/todos", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def delete(client: AsyncClient, user: UserAccount, todo: dict[str, Any]) -> None:
    response = await client.delete(f"/api/todos/{todo['id']}", headers=user.headers)
    assert response.status_code == 204


# ---- tombstones ----


async def test_normal_reads_never_show_tombstones(client: AsyncClient, alice: UserAccount) -> None:
    kept = await create_todo(client, alice, "kept", tags=["t"])
    gone = await create_todo(client, alice, "gone", tags=["t"])
    await delete(client, alice, gone)
    for params in [{}, {"tag": "t"}, {"sort": "due"}, {"sort": "updated"}, {"q": "gone"}]:
        page = await changes(client, alice, **params)
        assert gone["id"] not in [item["id"] for item in page["items"]], params
    listed = (await client.get("/api/mytodos", headers=alice.headers)).json()
    assert [item["id"] for item in listed] == [kept["id"]]
    assert await Todo.find({"deleted_at": {"$ne": None}}).count() == 1


async def test_tombstones_expire_through_a_ttl_index(
    client: AsyncClient, alice: UserAccount
) -> None:
    indexes = await Todo.get_pymongo_collection().index_information()
    assert indexes["todos_tombstone_ttl"]["expireAfterSeconds"] == 30 * 24 * 60 * 60


SYNC_FIELDS = {"_id", "owner_id", "version", "created_at", "updated_at", "deleted_at"}


async def test_a_tombstone_keeps_only_what_sync_needs(
    client: AsyncClient, alice: UserAccount
) -> None:
    todo = await create_todo(
        client,
        alice,
        "secret text",
        notes="secret notes",
        tags=["t"],
        due="2026-12-01",
        priority=3,
        completed=True,
    )
    await delete(client, alice, todo)
    stored = await Todo.get_pymongo_collection().find_one({"deleted_at": {"$ne": None}})
    assert stored is not None
    assert set(stored) == SYNC_FIELDS
    assert stored["version"] == 2
    # Delta sync still reports the deletion.
    sync = await changes(client, alice, updated_since=recently(), include_deleted="true")
    assert [(item["id"], item.get("deleted")) for item in sync["items"]] == [(todo["id"], True)]


async def test_clear_completed_leaves_tombstones_without_content(
    client: AsyncClient, alice: UserAccount
) -> None:
    await create_todo(client, alice, "done", notes="private", completed=True)
    await client.post("/api/todos/clear-completed", headers=alice.headers)
    stored = await Todo.get_pymongo_collection().find({}).to_list(None)
    assert [set(document) for document in stored] == [SYNC_FIELDS]


# ---- clear-completed ----


async def test_clear_completed_deletes_only_my_completed_todos(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    done = [await create_todo(client, alice, f"done {i}", completed=True) for i in range(3)]
    open_ = await create_todo(client, alice, "open")
    bobs = await create_todo(client, bob, "bob's", completed=True)
    response = await client.post("/api/todos/clear-completed", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"deleted": 3}
    assert [item["id"] for item in (await changes(client, alice))["items"]] == [open_["id"]]
    assert [item["id"] for item in (await changes(client, bob))["items"]] == [bobs["id"]]
    sync = await changes(client, alice, updated_since=recently(), include_deleted="true")
    tombstones = {item["id"] for item in sync["items"] if item.get("deleted")}
    assert tombstones == {todo["id"] for todo in done}
    again = await client.post("/api/todos/clear-completed", headers=alice.headers)
    assert again.json() == {"deleted": 0}


@pytest.mark.mock_only
async def test_clear_completed_needs_a_token(client: AsyncClient) -> None:
    assert (await client.post("/api/todos/clear-completed")).status_code == 401


# ---- delta sync ----


async def test_updated_since_lists_changes_in_update_order(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    first = await create_todo(client, alice, "first")
    second = await create_todo(client, alice, "second")
    await create_todo(client, bob, "bob's")
    await client.patch(f"/api/todos/{first['id']}", json={"notes": "n"}, headers=alice.headers)
    await delete(client, alice, second)
    body = await changes(client, alice, updated_since=recently(), include_deleted="true")
    assert set(body) == {"items", "next_cursor", "watermark"}
    assert [item["id"] for item in body["items"]] == [first["id"], second["id"]]
    assert body["items"][0]["notes"] == "n"
    tombstone = body["items"][1]
    assert set(tombstone) == {"id", "deleted", "deleted_at", "version"}
    assert (tombstone["deleted"], tombstone["version"]) == (True, 2)
    live_only = await changes(client, alice, updated_since=recently())
    assert [item["id"] for item in live_only["items"]] == [first["id"]]


async def test_the_watermark_is_the_next_updated_since(
    client: AsyncClient, alice: UserAccount
) -> None:
    before = await create_todo(client, alice, "before")
    first = await changes(client, alice, updated_since=recently(), include_deleted="true")
    assert [item["id"] for item in first["items"]] == [before["id"]]
    after = await create_todo(client, alice, "after")
    await delete(client, alice, before)
    second = await changes(client, alice, updated_since=first["watermark"], include_deleted="true")
    assert [item["id"] for item in second["items"]] == [after["id"], before["id"]]
    assert second["items"][1]["deleted"] is True
    assert second["watermark"] >= first["watermark"]
    third = await changes(client, alice, updated_since=second["watermark"], include_deleted="true")
    assert third["items"] == []


@pytest.mark.parametrize("sync_lag_ms", [60_000])
async def test_changes_younger_than_the_sync_lag_wait_for_the_next_call(
    client: AsyncClient, alice: UserAccount
) -> None:
    await create_todo(client, alice, "just now")
    started = datetime.now(UTC)
    body = await changes(client, alice, updated_since=recently(), include_deleted="true")
    assert body["items"] == []
    watermark = datetime.fromisoformat(body["watermark"])
    assert started - timedelta(seconds=61) < watermark <= started - timedelta(seconds=59)


async def test_delta_pages_keep_their_watermark(client: AsyncClient, alice: UserAccount) -> None:
    todos = [await create_todo(client, alice, f"t{i}") for i in range(5)]
    params = {"updated_since": recently(), "include_deleted": "true", "limit": 2}
    seen: list[str] = []
    body = await changes(client, alice, **params)
    watermark = body["watermark"]
    pages = 1
    while True:
        seen.extend(item["id"] for item in body["items"])
        assert body["watermark"] == watermark
        if body["next_cursor"] is None:
            break
        await create_todo(client, alice, "written while paging")
        body = await changes(client, alice, **params, cursor=body["next_cursor"])
        pages += 1
    assert pages == 3
    assert seen == [todo["id"] for todo in todos]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"include_deleted": "true"}, "needs updated_since"),
        ({"updated_since": LONG_AGO, "sort": "created"}, "update order"),
        ({"updated_since": LONG_AGO, "order": "desc"}, "update order"),
        ({"updated_since": LONG_AGO, "completed": "true"}, "no filters"),
        ({"updated_since": LONG_AGO, "tag": "x"}, "no filters"),
    ],
)
@pytest.mark.mock_only
async def test_unsupported_delta_combinations_are_400(
    client: AsyncClient, alice: UserAccount, params: dict[str, str], detail: str
) -> None:
    response = await client.get("/api/todos", params=params, headers=alice.headers)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


async def test_sort_updated_asc_is_allowed_with_updated_since(
    client: AsyncClient, alice: UserAccount
) -> None:
    params = {"updated_since": recently(), "sort": "updated", "order": "asc"}
    assert (await client.get("/api/todos", params=params, headers=alice.headers)).status_code == 200


async def test_updated_since_beyond_the_tombstone_retention_is_410(
    client: AsyncClient, alice: UserAccount
) -> None:
    too_old = since(datetime.now(UTC) - timedelta(days=30, minutes=1))
    response = await client.get(
        "/api/todos", params={"updated_since": too_old}, headers=alice.headers
    )
    assert response.status_code == 410
    assert "full resync" in response.json()["detail"]
    fine = since(datetime.now(UTC) - timedelta(days=29))
    response = await client.get("/api/todos", params={"updated_since": fine}, headers=alice.headers)
    assert response.status_code == 200


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00", "yesterday", "2026-01-01"])
@pytest.mark.mock_only
async def test_updated_since_needs_an_offset(
    client: AsyncClient, alice: UserAccount, value: str
) -> None:
    response = await client.get(
        "/api/todos", params={"updated_since": value}, headers=alice.headers
    )
    assert response.status_code == 422


async def test_a_delta_cursor_is_bound_to_its_updated_since(
    client: AsyncClient, alice: UserAccount
) -> None:
    for i in range(3):
        await create_todo(client, alice, f"t{i}")
    start = recently()
    first = await changes(client, alice, updated_since=start, limit=1)
    for other in [
        {"updated_since": since(datetime.now(UTC) - timedelta(minutes=6))},
        {"updated_since": start, "include_deleted": "true"},
        {},
    ]:
        response = await client.get(
            "/api/todos",
            params={**other, "limit": 1, "cursor": first["next_cursor"]},
            headers=alice.headers,
        )
        assert response.status_code == 400, other
