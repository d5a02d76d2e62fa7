from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from httpx import AsyncClient

from service.todos import store
from service.todos.models import Todo
from tests.todos.conftest import assert_counts_exact
from tests.utils import UserAccount, create_list, create_todo


async def list_all(client: AsyncClient, user: UserAccount, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/todos", params=params, headers=user.headers)
        assert response.status_code == 200
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def in_default_list(user: UserAccount, text: str) -> Todo:
    """A todo of the user's default list, to insert straight into the database."""
    return Todo(list_id=ObjectId(user.id), created_by=ObjectId(user.id), text=text)


# ---- create ----


@pytest.mark.mock_only
async def test_create_without_a_token_is_401(client: AsyncClient) -> None:
    response = await client.post("/api/todos", json={"text": "nope"})
    assert response.status_code == 401
    assert await Todo.count() == 0


async def test_create_returns_the_todo_and_its_location(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await client.post(
        "/api/todos", json={"text": "  water the plants  "}, headers=alice.headers
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "list_id",
        "created_by",
        "text",
        "notes",
        "completed",
        "completed_at",
        "due",
        "priority",
        "tags",
        "created_at",
        "updated_at",
        "version",
    }
    assert body["text"] == "water the plants"
    assert body["completed"] is False
    # Without list_id: the default list, whose id is the user's.
    assert (body["list_id"], body["created_by"]) == (alice.id, alice.id)
    assert response.headers["location"].endswith(f"/api/todos/{body['id']}")
    read = await client.get(response.headers["location"], headers=alice.headers)
    assert read.json() == body


async def test_create_stores_the_list_and_the_creator(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = await create_todo(client, alice)
    todo = await Todo.get(ObjectId(body["id"]))
    assert todo is not None
    assert (str(todo.list_id), str(todo.created_by)) == (alice.id, alice.id)
    assert [str(each) for each in todo.sync_lists] == [alice.id]
    assert todo.moved_from is None


async def test_create_can_start_completed(client: AsyncClient, alice: UserAccount) -> None:
    response = await client.post(
        "/api/todos", json={"text": "done already", "completed": True}, headers=alice.headers
    )
    assert response.json()["completed"] is True


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-text"),
        pytest.param({"text": ""}, id="empty"),
        pytest.param({"text": "   "}, id="blank"),
        pytest.param({"text": "x" * 1001}, id="too-long"),
        pytest.param({"text": 5}, id="not-a-string"),
        pytest.param({"text": "ok", "completed": "maybe"}, id="bad-completed"),
        pytest.param({"text": "ok", "owner_id": "6b06a170fc44c9818f5bc95c"}, id="owner_id"),
        pytest.param({"text": "ok", "id": "6b06a170fc44c9818f5bc95c"}, id="id"),
        pytest.param({"text": "ok", "created_by": "6b06a170fc44c9818f5bc95c"}, id="created_by"),
        pytest.param({"text": "ok", "list_id": "not-an-id"}, id="bad-list_id"),
        pytest.param({"text": "ok", "list_id": 5}, id="list_id-not-a-string"),
    ],
)
@pytest.mark.mock_only
async def test_create_rejects_invalid_bodies_with_422(
    client: AsyncClient, alice: UserAccount, body: dict[str, Any]
) -> None:
    response = await client.post("/api/todos", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert await Todo.count() == 0


async def test_create_accepts_1000_characters(client: AsyncClient, alice: UserAccount) -> None:
    response = await client.post("/api/todos", json={"text": "x" * 1000}, headers=alice.headers)
    assert response.status_code == 201


@pytest.mark.mock_only
async def test_malformed_json_is_422(client: AsyncClient, alice: UserAccount) -> None:
    response = await client.post(
        "/api/todos",
        content=b"{not json",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422


# ---- list ----


async def test_list_is_newest_first_and_only_mine(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    first = await create_todo(client, alice, "first")
    second = await create_todo(client, alice, "second")
    await create_todo(client, bob, "bob's")
    response = await client.get("/api/todos", headers=alice.headers)
    assert response.status_code == 200
    page = response.json()
    assert [item["id"] for item in page["items"]] == [second["id"], first["id"]]
    assert page["next_cursor"] is None


async def test_list_pages_cover_everything_once(client: AsyncClient, alice: UserAccount) -> None:
    created = [await create_todo(client, alice, f"todo {i}") for i in range(7)]
    items = await list_all(client, alice, limit=3)
    assert [item["id"] for item in items] == [todo["id"] for todo in reversed(created)]


async def test_list_pages_neither_repeat_nor_skip_when_todos_are_added(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = [await create_todo(client, alice, f"old {i}") for i in range(5)]
    first = (await client.get("/api/todos?limit=2", headers=alice.headers)).json()
    added = [await create_todo(client, alice, f"new {i}") for i in range(3)]
    seen = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (
            await client.get(
                "/api/todos", params={"limit": 2, "cursor": cursor}, headers=alice.headers
            )
        ).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
    assert seen == [todo["id"] for todo in reversed(created)]
    assert not {todo["id"] for todo in added} & set(seen)


async def test_list_limit_defaults_to_50(client: AsyncClient, alice: UserAccount) -> None:
    await Todo.insert_many([in_default_list(alice, f"t{i}") for i in range(55)])
    page = (await client.get("/api/todos", headers=alice.headers)).json()
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None


@pytest.mark.parametrize("limit", [0, 101, -1])
@pytest.mark.mock_only
async def test_list_limit_out_of_range_is_422(
    client: AsyncClient, alice: UserAccount, limit: int
) -> None:
    response = await client.get("/api/todos", params={"limit": limit}, headers=alice.headers)
    assert response.status_code == 422


@pytest.mark.parametrize("cursor", ["nonsense!", "AAAA", "A" * 17, "A" * 15 + "=", "é" * 16])
@pytest.mark.mock_only
async def test_a_bad_cursor_is_400(client: AsyncClient, alice: UserAccount, cursor: str) -> None:
    response = await client.get("/api/todos", params={"cursor": cursor}, headers=alice.headers)
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid cursor"}


async def test_a_cursor_from_another_users_listing_is_400(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    for _ in range(2):
        await create_todo(client, bob)
    bobs_page = (await client.get("/api/todos?limit=1", headers=bob.headers)).json()
    response = await client.get(
        "/api/todos", params={"cursor": bobs_page["next_cursor"]}, headers=alice.headers
    )
    assert response.status_code == 400


async def test_mytodos_is_a_bare_array_newest_first(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    first = await create_todo(client, alice, "first")
    second = await create_todo(client, alice, "second")
    await create_todo(client, bob)
    response = await client.get("/api/mytodos", headers=alice.headers)
    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [second["id"], first["id"]]


async def test_mytodos_limit_defaults_to_100_and_caps_at_1000(
    client: AsyncClient, alice: UserAccount
) -> None:
    await Todo.insert_many([in_default_list(alice, f"t{i}") for i in range(105)])
    assert len((await client.get("/api/mytodos", headers=alice.headers)).json()) == 100
    response = await client.get("/api/mytodos?limit=1000", headers=alice.headers)
    assert len(response.json()) == 105
    response = await client.get("/api/mytodos?limit=1001", headers=alice.headers)
    assert response.status_code == 422


# ---- read, replace, update, delete ----


async def test_read_my_todo(client: AsyncClient, alice: UserAccount) -> None:
    created = await create_todo(client, alice)
    response = await client.get(f"/api/todos/{created['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == created


async def test_put_replaces_text_and_completed(client: AsyncClient, alice: UserAccount) -> None:
    created = await create_todo(client, alice, "draft")
    response = await client.put(
        f"/api/todos/{created['id']}",
        json={"text": " final ", "completed": True},
        headers=alice.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["text"], body["completed"]) == ("final", True)
    assert body["created_at"] == created["created_at"]
    assert body["updated_at"] >= created["updated_at"]
    stored = await Todo.get(ObjectId(created["id"]))
    assert stored is not None
    assert stored.completed is True


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"text": "only text"}, id="no-completed"),
        pytest.param({"completed": True}, id="no-text"),
        pytest.param({"text": "x", "completed": True, "owner_id": "x"}, id="unknown-field"),
    ],
)
@pytest.mark.mock_only
async def test_put_needs_exactly_the_writable_fields(
    client: AsyncClient, alice: UserAccount, body: dict[str, Any]
) -> None:
    created = await create_todo(client, alice)
    response = await client.put(f"/api/todos/{created['id']}", json=body, headers=alice.headers)
    assert response.status_code == 422


async def test_patch_changes_only_what_was_sent(client: AsyncClient, alice: UserAccount) -> None:
    created = await create_todo(client, alice, "keep this text")
    response = await client.patch(
        f"/api/todos/{created['id']}", json={"completed": True}, headers=alice.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["text"], body["completed"]) == ("keep this text", True)
    response = await client.patch(
        f"/api/todos/{created['id']}", json={"text": "new text"}, headers=alice.headers
    )
    assert (response.json()["text"], response.json()["completed"]) == ("new text", True)


async def test_patch_with_an_empty_body_changes_nothing(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = await create_todo(client, alice)
    response = await client.patch(f"/api/todos/{created['id']}", json={}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"text": None}, id="null-text"),
        pytest.param({"completed": None}, id="null-completed"),
        pytest.param({"text": ""}, id="empty-text"),
        pytest.param({"owner_id": "6b06a170fc44c9818f5bc95c"}, id="owner_id"),
        pytest.param({"created_by": "6b06a170fc44c9818f5bc95c"}, id="created_by"),
        pytest.param({"list_id": None}, id="null-list_id"),
        pytest.param({"list_id": "6b06a170fc44c9818f5bc95"}, id="short-list_id"),
    ],
)
@pytest.mark.mock_only
async def test_patch_rejects_invalid_bodies_with_422(
    client: AsyncClient, alice: UserAccount, body: dict[str, Any]
) -> None:
    created = await create_todo(client, alice)
    response = await client.patch(f"/api/todos/{created['id']}", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert (await client.get(f"/api/todos/{created['id']}", headers=alice.headers)).json() == (
        created
    )


async def test_delete_then_delete_again_is_404(client: AsyncClient, alice: UserAccount) -> None:
    created = await create_todo(client, alice)
    first = await client.delete(f"/api/todos/{created['id']}", headers=alice.headers)
    assert first.status_code == 204
    assert first.content == b""
    second = await client.delete(f"/api/todos/{created['id']}", headers=alice.headers)
    assert second.status_code == 404
    assert second.json() == {"detail": "Todo not found"}
    read = await client.get(f"/api/todos/{created['id']}", headers=alice.headers)
    assert read.status_code == 404


# ---- nobody else's todos, and ids that aren't todos ----

METHODS: list[tuple[str, dict[str, Any] | None]] = [
    ("GET", None),
    ("PUT", {"text": "hijacked", "completed": True}),
    ("PATCH", {"text": "hijacked"}),
    ("DELETE", None),
]


@pytest.mark.parametrize(("method", "body"), METHODS, ids=[m for m, _ in METHODS])
async def test_other_user_cannot_touch_my_todo(
    client: AsyncClient,
    alice: UserAccount,
    bob: UserAccount,
    method: str,
    body: dict[str, Any] | None,
) -> None:
    created = await create_todo(client, alice, "alice's secret")
    response = await client.request(
        method, f"/api/todos/{created['id']}", json=body, headers=bob.headers
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Todo not found"}
    unchanged = await client.get(f"/api/todos/{created['id']}", headers=alice.headers)
    assert unchanged.json() == created


@pytest.mark.parametrize(("method", "body"), METHODS, ids=[m for m, _ in METHODS])
async def test_unknown_well_formed_id_is_404(
    client: AsyncClient, alice: UserAccount, method: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(
        method, f"/api/todos/{ObjectId()}", json=body, headers=alice.headers
    )
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "body"), METHODS, ids=[m for m, _ in METHODS])
async def test_deleted_todo_is_404_on_every_method(
    client: AsyncClient, alice: UserAccount, method: str, body: dict[str, Any] | None
) -> None:
    created = await create_todo(client, alice)
    await client.delete(f"/api/todos/{created['id']}", headers=alice.headers)
    response = await client.request(
        method, f"/api/todos/{created['id']}", json=body, headers=alice.headers
    )
    assert response.status_code == 404
    # Only the tombstone is left (no content), and nothing brought it back.
    stored = await Todo.get_pymongo_collection().find_one({"_id": ObjectId(created["id"])})
    assert stored is not None
    assert stored["deleted_at"] is not None
    assert stored["version"] == 2
    assert "text" not in stored


@pytest.mark.parametrize(("method", "body"), METHODS, ids=[m for m, _ in METHODS])
@pytest.mark.parametrize("bad_id", ["123", "not-an-object-id", "z" * 24, "0" * 25])
@pytest.mark.mock_only
async def test_malformed_id_is_422_never_500(
    client: AsyncClient,
    alice: UserAccount,
    method: str,
    body: dict[str, Any] | None,
    bad_id: str,
) -> None:
    response = await client.request(
        method, f"/api/todos/{bad_id}", json=body, headers=alice.headers
    )
    assert response.status_code == 422


# ---- writes that match nothing although the todo passes every check afterwards ----


@pytest.mark.parametrize(("method", "body"), METHODS[1:], ids=[m for m, _ in METHODS[1:]])
async def test_a_write_that_raced_another_is_409(
    client: AsyncClient,
    alice: UserAccount,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    body: dict[str, Any] | None,
) -> None:
    """A write filtered on the caller's lists that matched nothing, for a todo then found in
    one of them at an acceptable version: it was moved in between (say). Not a 404, 403 or 412
    (none is true): a 409 that says to retry."""
    errands = await create_list(client, alice, "Errands")
    created = await create_todo(client, alice)
    write = "delete_todo" if method == "DELETE" else "update_todo"
    real = getattr(store, write)

    async def missed(**kwargs: Any) -> Any:
        # The todo was elsewhere when the write ran: it lands where the caller may write after.
        return await real(**{**kwargs, "lists": [PydanticObjectId(errands["id"])]})

    monkeypatch.setattr(store, write, missed)
    response = await client.request(
        method, f"/api/todos/{created['id']}", json=body, headers=alice.headers
    )
    monkeypatch.undo()
    assert response.status_code == 409
    assert response.json() == {
        "detail": "The todo changed while it was being written: read it again and retry"
    }
    assert (await client.get(f"/api/todos/{created['id']}", headers=alice.headers)).json() == (
        created
    )


async def test_a_todo_deleted_right_after_its_move_is_404(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The move happened (both counts follow it), but the todo was gone before it could be
    read back."""
    errands = await create_list(client, alice, "Errands")
    created = await create_todo(client, alice)
    real = store.move_todo

    async def then_deleted(**kwargs: Any) -> Any:
        moved, _ = await real(**kwargs)
        await client.delete(f"/api/todos/{created['id']}", headers=alice.headers)
        return moved, None

    monkeypatch.setattr(store, "move_todo", then_deleted)
    response = await client.patch(
        f"/api/todos/{created['id']}", json={"list_id": errands["id"]}, headers=alice.headers
    )
    monkeypatch.undo()
    assert (response.status_code, response.json()) == (404, {"detail": "Todo not found"})
    await assert_counts_exact(alice.id, errands["id"])
