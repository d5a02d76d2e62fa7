"""Tombstones, clear-completed and delta sync (updated_since, include_deleted, watermark)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from service.config import Environment, Settings
from service.todos.models import Todo
from tests.conftest import TEST_SECRET_KEY
from tests.todos.conftest import (
    assert_counts_exact,
    delete_list,
    leave,
    snapshot,
    todo_count,
)
from tests.utils import UserAccount, create_list, create_todo, share_list

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


SYNC_FIELDS = {
    "_id",
    "list_id",
    "created_by",
    "sync_lists",
    "moved_from",
    "version",
    "created_at",
    "updated_at",
    "deleted_at",
}


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
    assert set(tombstone) == {"id", "list_id", "created_by", "deleted", "deleted_at", "version"}
    assert (tombstone["list_id"], tombstone["created_by"]) == (alice.id, alice.id)
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


# ---- delta sync across lists: todos that leave a reader's view ----


async def move(client: AsyncClient, user: UserAccount, todo: dict[str, Any], list_id: str) -> None:
    response = await client.patch(
        f"/api/todos/{todo['id']}", json={"list_id": list_id}, headers=user.headers
    )
    assert response.status_code == 200, response.text


async def test_a_todo_moved_to_a_list_the_reader_cannot_read_is_a_tombstone_of_the_list_it_left(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await create_list(client, alice, "Shared")
    private = await create_list(client, alice, "Private")
    await share_list(client, alice, shared["id"], bob, "viewer")
    todo = await create_todo(client, alice, "secret soon", list_id=shared["id"])
    start = recently()
    await move(client, alice, todo, private["id"])
    for params in [{}, {"list_id": shared["id"]}]:
        response = await client.get(
            "/api/todos",
            params={"updated_since": start, "include_deleted": "true", **params},
            headers=bob.headers,
        )
        [tombstone] = response.json()["items"]
        # Its deleted_at is when it left (the move: its last change).
        assert tombstone == {
            "id": todo["id"],
            "list_id": shared["id"],
            "created_by": alice.id,
            "deleted": True,
            "deleted_at": tombstone["deleted_at"],
            "version": 2,
        }
        assert tombstone["deleted_at"] >= todo["updated_at"]
        # Nothing of the list it went to.
        assert private["id"] not in response.text
    # Its owner, who reads both lists, sees the todo where it is now.
    [moved] = (await changes(client, alice, updated_since=start, include_deleted="true"))["items"]
    assert (moved["id"], moved["list_id"]) == (todo["id"], private["id"])
    # Without tombstones, the reader's sync has nothing: the todo is no longer theirs to see.
    assert (await changes(client, bob, updated_since=start))["items"] == []


async def test_a_tombstone_names_the_last_readable_list_whatever_lists_followed(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    first = await create_list(client, alice, "First")
    second = await create_list(client, alice, "Second")
    hidden = [(await create_list(client, alice, f"Hidden {i}"))["id"] for i in range(2)]
    for list_id in (first["id"], second["id"]):
        await share_list(client, alice, list_id, bob, "editor")
    todo = await create_todo(client, bob, "travels", list_id=first["id"])
    start = recently()
    await move(client, bob, todo, second["id"])
    for list_id in hidden:
        await move(client, alice, todo, list_id)
    [tombstone] = (await changes(client, bob, updated_since=start, include_deleted="true"))["items"]
    assert (tombstone["list_id"], tombstone["deleted"]) == (second["id"], True)
    # Synced one list at a time, each list reports it gone from itself.
    for list_id in (first["id"], second["id"]):
        [gone] = (
            await changes(client, bob, updated_since=start, include_deleted="true", list_id=list_id)
        )["items"]
        assert (gone["id"], gone["list_id"], gone["deleted"]) == (todo["id"], list_id, True)


async def test_a_todo_moved_into_a_readable_list_appears_as_a_change(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await create_list(client, alice, "Shared")
    await share_list(client, alice, shared["id"], bob, "viewer")
    todo = await create_todo(client, alice, "private for now")
    start = recently()
    assert (await changes(client, bob, updated_since=start, include_deleted="true"))["items"] == []
    await move(client, alice, todo, shared["id"])
    for include_deleted in ("true", "false"):
        [item] = (await changes(client, bob, updated_since=start, include_deleted=include_deleted))[
            "items"
        ]
        assert (item["id"], item["list_id"], item["text"]) == (
            todo["id"],
            shared["id"],
            "private for now",
        )


async def test_a_todo_moved_between_two_readable_lists_is_a_change_in_its_new_list(
    client: AsyncClient, alice: UserAccount
) -> None:
    errands = await create_list(client, alice, "Errands")
    todo = await create_todo(client, alice)
    start = recently()
    await move(client, alice, todo, errands["id"])
    [item] = (await changes(client, alice, updated_since=start, include_deleted="true"))["items"]
    assert (item["list_id"], item.get("deleted")) == (errands["id"], None)
    # Synced by list: gone from the one it left, there in the other.
    [left] = (
        await changes(client, alice, updated_since=start, include_deleted="true", list_id=alice.id)
    )["items"]
    assert (left["list_id"], left["deleted"]) == (alice.id, True)
    [arrived] = (
        await changes(
            client, alice, updated_since=start, include_deleted="true", list_id=errands["id"]
        )
    )["items"]
    assert arrived == item


async def test_a_deleted_lists_tombstones_reach_its_owner_only(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await create_list(client, alice, "Doomed")
    await share_list(client, alice, shared["id"], bob, "editor")
    todos = [await create_todo(client, bob, f"t{i}", list_id=shared["id"]) for i in range(2)]
    start = recently()
    await delete_list(client, alice, shared["id"])
    owners = await changes(client, alice, updated_since=start, include_deleted="true")
    assert [(item["id"], item["list_id"], item["deleted"]) for item in owners["items"]] == [
        (todo["id"], shared["id"], True) for todo in todos
    ]
    # The member learns of the deletion from lists sync, and drops the todos themselves.
    assert (await changes(client, bob, updated_since=start, include_deleted="true"))["items"] == []
    # Named, a deleted list is a list nobody can read.
    response = await client.get(
        "/api/todos",
        params={"updated_since": start, "include_deleted": "true", "list_id": shared["id"]},
        headers=alice.headers,
    )
    assert response.status_code == 404


async def test_a_member_who_left_gets_nothing_more_of_the_list(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await create_list(client, alice, "Shared")
    await share_list(client, alice, shared["id"], bob, "editor")
    todo = await create_todo(client, alice, list_id=shared["id"])
    start = recently()
    await leave(client, shared["id"], bob)
    await delete(client, alice, todo)
    assert (await changes(client, bob, updated_since=start, include_deleted="true"))["items"] == []


async def test_delta_sync_pages_across_lists(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    shared = await create_list(client, bob, "Shared")
    await share_list(client, bob, shared["id"], alice, "viewer")
    written = []
    for i in range(3):
        written.append(await create_todo(client, alice, f"mine {i}"))
        written.append(await create_todo(client, bob, f"shared {i}", list_id=shared["id"]))
    params = {"updated_since": recently(), "include_deleted": "true", "limit": 2}
    body = await changes(client, alice, **params)
    seen = [item["id"] for item in body["items"]]
    while body["next_cursor"]:
        body = await changes(client, alice, **params, cursor=body["next_cursor"])
        seen.extend(item["id"] for item in body["items"])
    assert seen == [todo["id"] for todo in written]


# ---- clear-completed by list ----


async def test_clear_completed_clears_every_list_the_caller_may_change(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    errands = await create_list(client, alice, "Errands")
    editing = await create_list(client, bob, "Bob's, alice edits")
    viewing = await create_list(client, bob, "Bob's, alice views")
    await share_list(client, bob, editing["id"], alice, "editor")
    await share_list(client, bob, viewing["id"], alice, "viewer")
    lists = {"inbox": alice.id, "errands": errands["id"], "editing": editing["id"]}
    for name, list_id in lists.items():
        for i in range(2):
            await create_todo(client, alice, f"{name} done {i}", list_id=list_id, completed=True)
        await create_todo(client, alice, f"{name} open", list_id=list_id)
    await create_todo(client, bob, "viewed done", list_id=viewing["id"], completed=True)
    response = await client.post("/api/todos/clear-completed", headers=alice.headers)
    assert response.json() == {"deleted": 6}
    for list_id in lists.values():
        assert await todo_count(list_id) == 1
        await assert_counts_exact(list_id)
    # A list alice only views keeps its completed todos.
    assert await todo_count(viewing["id"]) == 1
    await assert_counts_exact(viewing["id"])


async def test_clear_completed_with_list_id_clears_that_list_only(
    client: AsyncClient, alice: UserAccount
) -> None:
    errands = await create_list(client, alice, "Errands")
    await create_todo(client, alice, "inbox done", completed=True)
    await create_todo(client, alice, "errand done", list_id=errands["id"], completed=True)
    response = await client.post(
        "/api/todos/clear-completed", params={"list_id": errands["id"]}, headers=alice.headers
    )
    assert response.json() == {"deleted": 1}
    assert (await todo_count(errands["id"]), await todo_count(alice.id)) == (0, 1)
    await assert_counts_exact(errands["id"], alice.id)


@pytest.mark.parametrize("role", ["viewer", "stranger"])
async def test_clear_completed_of_a_list_the_caller_may_not_change_is_refused(
    client: AsyncClient, alice: UserAccount, bob: UserAccount, role: str
) -> None:
    shared = await create_list(client, alice)
    if role == "viewer":
        await share_list(client, alice, shared["id"], bob, "viewer")
    await create_todo(client, alice, "done", list_id=shared["id"], completed=True)
    before = await snapshot()
    response = await client.post(
        "/api/todos/clear-completed", params={"list_id": shared["id"]}, headers=bob.headers
    )
    assert response.status_code == {"viewer": 403, "stranger": 404}[role]
    assert await snapshot() == before


@pytest.mark.parametrize("list_id", ["abc", "0" * 25])
@pytest.mark.mock_only
async def test_clear_completed_with_a_malformed_list_id_is_422(
    client: AsyncClient, alice: UserAccount, list_id: str
) -> None:
    response = await client.post(
        "/api/todos/clear-completed", params={"list_id": list_id}, headers=alice.headers
    )
    assert response.status_code == 422
