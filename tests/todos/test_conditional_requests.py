"""ETag, If-Match and If-None-Match on single todos."""

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from service.todos.etags import CONDITION_PATTERN
from tests.utils import UserAccount, create_todo

WRITES: list[tuple[str, dict[str, Any] | None]] = [
    ("PUT", {"text": "replaced", "completed": True}),
    ("PATCH", {"text": "patched"}),
    ("DELETE", None),
]
WRITE_IDS = [method for method, _ in WRITES]


def url(todo: dict[str, Any]) -> str:
    return f"/api/todos/{todo['id']}"


async def test_every_single_todo_response_carries_its_etag(
    client: AsyncClient, alice: UserAccount
) -> None:
    created = await client.post("/api/todos", json={"text": "x"}, headers=alice.headers)
    assert created.headers["etag"] == '"1"'
    todo = created.json()
    assert (await client.get(url(todo), headers=alice.headers)).headers["etag"] == '"1"'
    patched = await client.patch(url(todo), json={"priority": 1}, headers=alice.headers)
    assert patched.headers["etag"] == '"2"'
    put = await client.put(url(todo), json={"text": "y", "completed": False}, headers=alice.headers)
    assert put.headers["etag"] == '"3"'


async def test_if_none_match_with_the_current_etag_is_304(
    client: AsyncClient, alice: UserAccount
) -> None:
    todo = await create_todo(client, alice)
    response = await client.get(url(todo), headers={**alice.headers, "If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"1"'
    await client.patch(url(todo), json={"notes": "changed"}, headers=alice.headers)
    response = await client.get(url(todo), headers={**alice.headers, "If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.json()["notes"] == "changed"


@pytest.mark.parametrize(("method", "body"), WRITES, ids=WRITE_IDS)
async def test_a_stale_if_match_is_412_and_changes_nothing(
    client: AsyncClient, alice: UserAccount, method: str, body: dict[str, Any] | None
) -> None:
    todo = await create_todo(client, alice)
    current = (await client.patch(url(todo), json={"notes": "v2"}, headers=alice.headers)).json()
    response = await client.request(
        method, url(todo), json=body, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert response.status_code == 412
    assert "changed" in response.json()["detail"]
    assert (await client.get(url(todo), headers=alice.headers)).json() == current


@pytest.mark.parametrize(("method", "body"), WRITES, ids=WRITE_IDS)
@pytest.mark.parametrize("if_match", ['"1"', '"7", "1"', "*"])
async def test_a_matching_if_match_lets_the_write_through(
    client: AsyncClient,
    alice: UserAccount,
    method: str,
    body: dict[str, Any] | None,
    if_match: str,
) -> None:
    todo = await create_todo(client, alice)
    response = await client.request(
        method, url(todo), json=body, headers={**alice.headers, "If-Match": if_match}
    )
    assert response.status_code in {200, 204}


@pytest.mark.parametrize("if_match", ['W/"1"', '"abc"', '"01"'])
async def test_weak_or_foreign_etags_never_match(
    client: AsyncClient, alice: UserAccount, if_match: str
) -> None:
    todo = await create_todo(client, alice)
    response = await client.patch(
        url(todo), json={"notes": "x"}, headers={**alice.headers, "If-Match": if_match}
    )
    assert response.status_code == 412


async def test_an_empty_patch_still_checks_if_match(
    client: AsyncClient, alice: UserAccount
) -> None:
    todo = await create_todo(client, alice)
    stale = await client.patch(url(todo), json={}, headers={**alice.headers, "If-Match": '"2"'})
    assert stale.status_code == 412
    fresh = await client.patch(url(todo), json={}, headers={**alice.headers, "If-Match": '"1"'})
    assert fresh.status_code == 200


METHODS = [("GET", None), *WRITES]


@pytest.mark.parametrize(("method", "body"), METHODS, ids=[m for m, _ in METHODS])
@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
@pytest.mark.parametrize("value", ['"1"', '"2"', "*"])
async def test_someone_elses_todo_is_404_whatever_the_headers(
    client: AsyncClient,
    alice: UserAccount,
    bob: UserAccount,
    method: str,
    body: dict[str, Any] | None,
    header: str,
    value: str,
) -> None:
    todo = await create_todo(client, alice)
    response = await client.request(
        method, url(todo), json=body, headers={**bob.headers, header: value}
    )
    assert response.status_code == 404
    assert (await client.get(url(todo), headers=alice.headers)).json() == todo


async def test_of_concurrent_patches_with_one_if_match_exactly_one_wins(
    client: AsyncClient, alice: UserAccount
) -> None:
    todo = await create_todo(client, alice)
    responses = await asyncio.gather(
        *(
            client.patch(
                url(todo),
                json={"notes": f"writer {i}"},
                headers={**alice.headers, "If-Match": '"1"'},
            )
            for i in range(8)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 7
    winner = next(response.json() for response in responses if response.status_code == 200)
    final = (await client.get(url(todo), headers=alice.headers)).json()
    assert final == winner
    assert final["version"] == 2


@pytest.mark.mock_only
async def test_an_overlong_if_match_is_422(client: AsyncClient, alice: UserAccount) -> None:
    todo = await create_todo(client, alice)
    response = await client.patch(
        url(todo), json={"notes": "x"}, headers={**alice.headers, "If-Match": '"1",' * 1000}
    )
    assert response.status_code == 422


# Header values are latin-1 on the wire: "²" (\xb2) is one that str.isdigit() accepts.
MALFORMED = ["1", "abc", '"1', 'w/"1"', '"1" "2"', '*, "1"', "\xb2"]


def condition(user: UserAccount, name: str, value: str) -> list[tuple[bytes, bytes]]:
    """The user's headers plus one condition header, as latin-1 bytes."""
    headers = {**user.headers, name: value}
    return [(key.encode(), value.encode("latin-1")) for key, value in headers.items()]


@pytest.mark.parametrize(("method", "body"), WRITES, ids=WRITE_IDS)
@pytest.mark.mock_only
async def test_a_malformed_if_match_is_400_and_changes_nothing(
    client: AsyncClient, alice: UserAccount, method: str, body: dict[str, Any] | None
) -> None:
    todo = await create_todo(client, alice)
    for value in MALFORMED:
        response = await client.request(
            method, url(todo), json=body, headers=condition(alice, "If-Match", value)
        )
        assert response.status_code == 400, value
        assert "If-Match must be * or a comma-separated list" in response.json()["detail"]
    assert (await client.get(url(todo), headers=alice.headers)).json() == todo


@pytest.mark.mock_only
async def test_a_malformed_if_none_match_is_400(client: AsyncClient, alice: UserAccount) -> None:
    todo = await create_todo(client, alice)
    for value in MALFORMED:
        response = await client.get(url(todo), headers=condition(alice, "If-None-Match", value))
        assert response.status_code == 400, value
        assert "If-None-Match must be" in response.json()["detail"]


async def test_a_version_in_a_foreign_digit_never_matches(
    client: AsyncClient, alice: UserAccount
) -> None:
    # "²" passes str.isdigit but is no version: a 412 (well-formed, matches nothing), not a 500.
    todo = await create_todo(client, alice)
    headers = condition(alice, "If-Match", '"\xb2"')
    response = await client.patch(url(todo), json={"notes": "x"}, headers=headers)
    assert response.status_code == 412
    response = await client.get(url(todo), headers=condition(alice, "If-None-Match", '"\xb2"'))
    assert response.status_code == 200


@pytest.mark.mock_only
async def test_the_entity_tag_syntax_is_documented(app: FastAPI) -> None:
    operations = app.openapi()["paths"]["/api/todos/{todo_id}"]
    for method, header in [
        ("get", "If-None-Match"),
        ("put", "If-Match"),
        ("patch", "If-Match"),
        ("delete", "If-Match"),
    ]:
        parameter = next(p for p in operations[method]["parameters"] if p["name"] == header.lower())
        # Optional, but never null: a header can't carry one.
        assert parameter["schema"]["type"] == "string", method
        assert parameter["schema"]["pattern"] == CONDITION_PATTERN, method
        assert "400" in operations[method]["responses"], method
