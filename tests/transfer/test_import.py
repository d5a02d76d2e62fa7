"""POST /api/import: validated whole first, then written all or nothing."""

from typing import Any

import pytest
from httpx import AsyncClient

from tests.transfer.conftest import export_file, export_json, fail_second_insert, stored_state, todo
from tests.utils import UserAccount, create_account, create_list, create_todo, share_list


async def _import(client: AsyncClient, user: UserAccount, body: Any) -> Any:
    return await client.post("/api/import", json=body, headers=user.headers)


async def test_an_export_imported_into_an_empty_account_reproduces_it(
    client: AsyncClient, alice: UserAccount, bob: UserAccount
) -> None:
    await create_todo(client, alice, "inbox todo", notes="n", due="2026-12-01T09:00:00+02:00")
    await create_todo(client, alice, "done", completed=True, priority=3, tags=["x"])
    work = await create_list(client, alice, "Work")
    await create_todo(client, alice, '=formula, "quoted"\nline', list_id=work["id"])
    await create_list(client, alice, "Empty")
    shared = await create_list(client, bob, "Bob's")
    await share_list(client, bob, shared["id"], alice, "editor")
    await create_todo(client, bob, "bob's", list_id=shared["id"])
    exported = await export_json(client, alice)

    carol = await create_account(client)
    response = await _import(client, carol, exported)

    assert response.status_code == 201, response.text
    assert response.json() == {"lists": 3, "todos": 4}  # the default list is filled, not made
    again = await export_json(client, carol)

    def content(body: dict[str, Any]) -> list[Any]:
        keep = ("text", "notes", "completed", "due", "priority", "tags")
        return [
            (each["name"], each["default"], [{k: t[k] for k in keep} for t in each["todos"]])
            for each in body["lists"]
        ]

    assert content(again) == content(exported)
    # The lists are carol's own, and so are the todos, whatever the file said.
    assert {each["role"] for each in again["lists"]} == {"owner"}
    creators = {t["created_by"] for each in again["lists"] for t in each["todos"]}
    assert creators == {carol.id}
    old_ids = {t["id"] for each in exported["lists"] for t in each["todos"]}
    assert old_ids.isdisjoint(t["id"] for each in again["lists"] for t in each["todos"])


async def test_an_import_adds_lists_beside_the_existing_ones(
    client: AsyncClient, alice: UserAccount
) -> None:
    await create_todo(client, alice, "already here")
    body = export_file({"name": "New", "todos": [todo("one"), todo("two", completed=True)]})
    response = await _import(client, alice, body)
    assert response.status_code == 201
    assert response.json() == {"lists": 1, "todos": 2}
    lists = await client.get("/api/lists", headers=alice.headers)
    assert [each["name"] for each in lists.json()["items"]] == ["Inbox", "New"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (export_file({"name": "L", "todos": [todo(due="tomorrow")]}), "lists[0].todos[0].due"),
        (
            export_file({"name": "A"}, {"name": "B", "todos": [todo(), todo(text="")]}),
            "lists[1].todos[1].text",
        ),
        (export_file({"name": " "}), "lists[0].name"),
        (export_file({"name": "L", "todos": [todo(owner="x")]}), "lists[0].todos[0].owner"),
        (export_file({"name": "L", "todos": [todo(priority=9)]}), "lists[0].todos[0].priority"),
        # Read as a float, 2**53 + 1 would be 2**53: the bound is below it, so it still fails.
        (
            export_file({"name": "L", "todos": [todo(version=2**53 + 1)]}),
            "lists[0].todos[0].version",
        ),
        ({"version": 2, "lists": []}, "version"),
        ({"lists": []}, "version"),
        # JSON Schema's `const: 1` refuses `true`; Python's True == 1 would take it.
        ({"version": True, "lists": []}, "version"),
    ],
)
async def test_an_invalid_file_is_422_with_the_error_path_and_writes_nothing(
    client: AsyncClient, alice: UserAccount, body: Any, path: str
) -> None:
    before = await stored_state()
    response = await _import(client, alice, body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert path in [error["path"] for error in errors]
    assert all(set(error) == {"type", "loc", "msg", "path"} for error in errors)
    assert await stored_state() == before


async def test_the_errors_of_a_file_are_listed_up_to_a_bound(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = export_file({"name": "L", "todos": [todo(due="bad")] * 50})
    response = await _import(client, alice, body)
    assert response.status_code == 422
    paths = [error["path"] for error in response.json()["detail"]]
    assert paths == [f"lists[0].todos[{n}].due" for n in range(20)]


async def test_version_1_0_is_version_1(client: AsyncClient, alice: UserAccount) -> None:
    # 1.0 is the integer 1 to JSON Schema, which the OpenAPI document states.
    response = await _import(client, alice, {"version": 1.0, "lists": [{"name": "L"}]})
    assert response.status_code == 201, response.text


async def test_a_422_does_not_repeat_a_long_unknown_field_name(
    client: AsyncClient, alice: UserAccount
) -> None:
    names = [f"{n}" + "k" * 60_000 for n in range(15)]
    body = export_file({"name": "L", "todos": [{**todo(), **dict.fromkeys(names, 1)}]})
    response = await _import(client, alice, body)
    assert response.status_code == 422
    assert len(response.content) < 10_000
    first = response.json()["detail"][0]
    assert first["path"] == "lists[0].todos[0]." + names[0][:64] + "…"
    assert first["loc"] == ["body", "lists", 0, "todos", 0, names[0][:64] + "…"]


async def test_a_body_that_is_not_json_is_422(client: AsyncClient, alice: UserAccount) -> None:
    response = await client.post(
        "/api/import",
        content=b"{not json",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("settings_overrides", [{"import_max_todos": 3}])
async def test_more_than_import_max_todos_is_422(client: AsyncClient, alice: UserAccount) -> None:
    body = export_file({"name": "A", "todos": [todo()] * 2}, {"name": "B", "todos": [todo()] * 2})
    response = await _import(client, alice, body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["path"] == "lists"
    assert "At most 3 todos per import" in response.json()["detail"][0]["msg"]
    fits = export_file({"name": "A", "todos": [todo()] * 3})
    assert (await _import(client, alice, fits)).status_code == 201


@pytest.mark.parametrize("settings_overrides", [{"max_todos_per_list": 2}])
async def test_a_list_past_max_todos_per_list_is_422(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = export_file({"name": "A", "todos": [todo()] * 2}, {"name": "B", "todos": [todo()] * 3})
    response = await _import(client, alice, body)
    assert response.status_code == 422
    assert [error["path"] for error in response.json()["detail"]] == ["lists[1].todos"]


@pytest.mark.parametrize("settings_overrides", [{"max_todos_per_list": 3}])
async def test_a_default_list_that_would_overflow_is_409_and_nothing_stays(
    client: AsyncClient, alice: UserAccount
) -> None:
    await create_todo(client, alice, "already here")
    await create_todo(client, alice, "and here")
    before = await stored_state()
    body = export_file(
        {"name": "Fine", "todos": [todo("new list's")]},
        {"name": "Inbox", "default": True, "todos": [todo("a"), todo("b")]},
    )
    response = await _import(client, alice, body)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Todo limit reached: at most 3 todos per list; delete some first."
    }
    assert await stored_state() == before
    # The slots went back with the undone writes: one more todo still fits.
    await create_todo(client, alice, "fits")


@pytest.mark.parametrize("settings_overrides", [{"max_lists_per_user": 3}])
async def test_past_max_lists_per_user_is_409_and_nothing_stays(
    client: AsyncClient, alice: UserAccount
) -> None:
    before = await stored_state()
    body = export_file(
        {"name": "One", "todos": [todo()]},
        {"name": "Two", "todos": [todo()]},
        {"name": "Three", "todos": [todo()]},
    )
    response = await _import(client, alice, body)
    assert response.status_code == 409
    assert response.json() == {"detail": "List limit reached: at most 3 lists; delete some first."}
    assert await stored_state() == before
    # The list slots went back too: two lists (with the default, 3) still fit.
    response = await _import(client, alice, export_file({"name": "One"}, {"name": "Two"}))
    assert response.status_code == 201


async def test_a_database_failure_mid_import_undoes_what_was_written(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_todo(client, alice, "already here")
    before = await stored_state()
    fail_second_insert(monkeypatch)
    body = export_file(
        {"name": "Inbox", "default": True, "todos": [todo("a"), todo("b")]},
        {"name": "Second", "todos": [todo("c")]},
    )
    response = await _import(client, alice, body)
    assert response.status_code >= 500
    assert await stored_state() == before


async def test_import_needs_a_token(client: AsyncClient) -> None:
    response = await client.post("/api/import", json=export_file())
    assert response.status_code == 401


async def test_every_list_marked_default_fills_the_default_list(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = export_file(
        {"name": "Inbox", "default": True, "todos": [todo("a")]},
        {"name": "Old inbox", "default": True, "todos": [todo("b")]},
    )
    response = await _import(client, alice, body)
    assert response.status_code == 201
    assert response.json() == {"lists": 0, "todos": 2}
    exported = await export_json(client, alice)
    assert [(each["name"], [t["text"] for t in each["todos"]]) for each in exported["lists"]] == [
        ("Inbox", ["a", "b"])
    ]
