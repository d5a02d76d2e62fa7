"""The rich todo fields: notes, completed_at, due, priority, tags and version."""

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient

from tests.utils import UserAccount, create_todo


async def patch(
    client: AsyncClient, user: UserAccount, todo: dict[str, Any], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.patch(f"/api/todos/{todo['id']}", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_new_todo_has_the_defaults(client: AsyncClient, alice: UserAccount) -> None:
    body = await create_todo(client, alice)
    assert body["notes"] == ""
    assert body["completed_at"] is None
    assert body["due"] is None
    assert body["priority"] == 0
    assert body["tags"] == []
    assert body["version"] == 1


async def test_every_field_round_trips(client: AsyncClient, alice: UserAccount) -> None:
    body = await create_todo(
        client,
        alice,
        "plan trip",
        notes="  book\nthe train  ",
        due="2026-12-01",
        priority=3,
        tags=["Travel", "family_2026", "travel", "a-b"],
    )
    assert body["notes"] == "  book\nthe train  "
    assert body["due"] == "2026-12-01"
    assert body["priority"] == 3
    assert body["tags"] == ["travel", "family_2026", "a-b"]
    read = await client.get(f"/api/todos/{body['id']}", headers=alice.headers)
    assert read.json() == body


@pytest.mark.parametrize(
    "due",
    [
        "2026-12-01",
        "2026-12-01T09:30:00+02:00",
        "2026-12-01T09:30:00Z",
        "2026-12-01T09:30-05:00",
        "2026-12-01T09:30:00.250+00:00",
    ],
)
async def test_due_is_returned_exactly_as_sent(
    client: AsyncClient, alice: UserAccount, due: str
) -> None:
    body = await create_todo(client, alice, due=due)
    assert body["due"] == due


@pytest.mark.parametrize(
    "due",
    [
        "2026-12-01T09:30:00",
        "2026-13-01",
        "2026-02-30",
        "tomorrow",
        "20261201",
        "2026-12-01 09:30:00+00:00",
        "",
        "2026-12-01T09:30:00+02:00" + "0" * 30,
        5,
    ],
)
@pytest.mark.mock_only
async def test_naive_or_malformed_due_is_422(
    client: AsyncClient, alice: UserAccount, due: object
) -> None:
    response = await client.post(
        "/api/todos", json={"text": "x", "due": due}, headers=alice.headers
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"notes": "x" * 8193}, id="notes-too-long"),
        pytest.param({"priority": 4}, id="priority-4"),
        pytest.param({"priority": -1}, id="priority-negative"),
        pytest.param({"priority": "high"}, id="priority-text"),
        pytest.param({"tags": [f"t{i}" for i in range(21)]}, id="21-tags"),
        pytest.param({"tags": ["two words"]}, id="tag-space"),
        pytest.param({"tags": [""]}, id="tag-empty"),
        pytest.param({"tags": ["x" * 33]}, id="tag-too-long"),
        pytest.param({"tags": ["ünïcode"]}, id="tag-non-ascii"),
        pytest.param({"tags": "one"}, id="tags-not-a-list"),
        pytest.param({"tags": ["a"] * 101}, id="tags-too-many-sent"),
        pytest.param({"completed_at": "2026-01-01T00:00:00Z"}, id="completed_at"),
        pytest.param({"version": 7}, id="version"),
    ],
)
@pytest.mark.mock_only
async def test_invalid_fields_are_422(
    client: AsyncClient, alice: UserAccount, fields: dict[str, Any]
) -> None:
    response = await client.post("/api/todos", json={"text": "x", **fields}, headers=alice.headers)
    assert response.status_code == 422


async def test_limits_are_inclusive(client: AsyncClient, alice: UserAccount) -> None:
    body = await create_todo(
        client,
        alice,
        notes="x" * 8192,
        tags=[f"tag{i}" for i in range(20)],
        priority=3,
    )
    assert len(body["notes"]) == 8192
    assert len(body["tags"]) == 20


async def test_tags_are_stored_lower_case_with_duplicates_merged(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = await create_todo(client, alice, tags=["Work", "home", "WORK", "work"])
    assert body["tags"] == ["work", "home"]


async def test_completed_at_follows_completed(client: AsyncClient, alice: UserAccount) -> None:
    todo = await create_todo(client, alice)
    done = await patch(client, alice, todo, {"completed": True})
    assert done["completed_at"] is not None
    assert done["completed_at"] == done["updated_at"]
    again = await patch(client, alice, todo, {"completed": True, "notes": "still done"})
    assert again["completed_at"] == done["completed_at"]
    undone = await patch(client, alice, todo, {"completed": False})
    assert undone["completed_at"] is None


async def test_a_todo_created_completed_has_completed_at(
    client: AsyncClient, alice: UserAccount
) -> None:
    body = await create_todo(client, alice, completed=True)
    assert body["completed_at"] == body["created_at"]


async def test_version_counts_every_change(client: AsyncClient, alice: UserAccount) -> None:
    todo = await create_todo(client, alice)
    assert (await patch(client, alice, todo, {"priority": 1}))["version"] == 2
    put = await client.put(
        f"/api/todos/{todo['id']}", json={"text": "x", "completed": False}, headers=alice.headers
    )
    assert put.json()["version"] == 3
    assert (await patch(client, alice, todo, {}))["version"] == 3


async def test_put_resets_omitted_fields_to_defaults(
    client: AsyncClient, alice: UserAccount
) -> None:
    todo = await create_todo(
        client, alice, notes="n", due="2026-12-01", priority=2, tags=["a"], completed=True
    )
    response = await client.put(
        f"/api/todos/{todo['id']}",
        json={"text": "fresh", "completed": False},
        headers=alice.headers,
    )
    body = response.json()
    assert (body["notes"], body["due"], body["priority"], body["tags"]) == ("", None, 0, [])
    assert body["completed_at"] is None


async def test_put_sets_every_writable_field(client: AsyncClient, alice: UserAccount) -> None:
    todo = await create_todo(client, alice)
    sent = {
        "text": "t",
        "notes": "n",
        "completed": True,
        "due": "2027-01-02T03:04:05+06:00",
        "priority": 1,
        "tags": ["x"],
    }
    body = (await client.put(f"/api/todos/{todo['id']}", json=sent, headers=alice.headers)).json()
    assert {key: body[key] for key in sent} == sent
    assert body["completed_at"] is not None


async def test_patch_null_due_clears_it(client: AsyncClient, alice: UserAccount) -> None:
    todo = await create_todo(client, alice, due="2026-12-01", priority=2)
    body = await patch(client, alice, todo, {"due": None})
    assert body["due"] is None
    assert body["priority"] == 2


@pytest.mark.parametrize("field", ["notes", "priority", "tags"])
@pytest.mark.mock_only
async def test_patch_null_is_422_for_other_fields(
    client: AsyncClient, alice: UserAccount, field: str
) -> None:
    todo = await create_todo(client, alice)
    response = await client.patch(
        f"/api/todos/{todo['id']}", json={field: None}, headers=alice.headers
    )
    assert response.status_code == 422


async def test_dollar_values_are_stored_literally(client: AsyncClient, alice: UserAccount) -> None:
    todo = await create_todo(client, alice)
    body = await patch(client, alice, todo, {"text": "$text", "notes": "$version"})
    assert (body["text"], body["notes"]) == ("$text", "$version")


async def test_concurrent_patches_of_different_fields_both_stick(
    client: AsyncClient, alice: UserAccount
) -> None:
    todo = await create_todo(client, alice)
    bodies = [{"notes": f"note {i}"} if i % 2 else {"priority": i % 3 + 1} for i in range(6)]
    await asyncio.gather(*(patch(client, alice, todo, body) for body in bodies))
    final = (await client.get(f"/api/todos/{todo['id']}", headers=alice.headers)).json()
    assert final["version"] == 7
    assert final["notes"].startswith("note ")
    assert final["priority"] in {1, 2, 3}
