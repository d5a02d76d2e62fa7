"""Every date and number a todo route takes, at and beyond its bounds: accepted, or refused
with a 4xx (422 for a query or body value, 400 for a cursor), never a 500."""

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from service.core.pagination import encode_cursor
from tests.utils import UserAccount, create_todo

Send = Callable[[AsyncClient, UserAccount, Any], Awaitable[Response]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Delta sync sees a change at once, so that a delta answer has a next page right away.
    return {"sync_lag_ms": 0}


DUES_ACCEPTED = [
    "0001-01-01",
    "9999-12-31",
    "2024-02-29",
    "2000-02-29",
    "0004-02-29",
    "0400-02-29",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00-00:00",
    "0001-01-02T00:00:00+23:59",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.999999+00:00",
    "9999-12-30T23:59:59.999999-23:59",
    "2026-12-01T23:59:59.1+23:59",
]
DUES_REFUSED = [
    "0000-00-00",
    "0000-01-01",
    "0000-02-29",
    "2026-00-01",
    "2026-13-01",
    "2026-01-00",
    "2026-01-32",
    "2026-04-31",
    "2026-02-29",
    "1900-02-29",
    "10000-01-01",
    "+2026-01-01",
    "\uff12\uff10\uff12\uff16-01-01",  # full-width digits
    # Instants outside 0001-01-01T00:00Z .. 9999-12-31T23:59:59.999999Z.
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00+01:00",
    # Representable, but on the edge days a datetime must be UTC (documented).
    "9999-12-31T00:00:00+05:00",
    "0001-01-01T23:00:00-01:00",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:60:00Z",
    "2026-01-01T23:59:60Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+00:60",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01t00:00:00z",
    "2026-01-01T00:00:00",
]
# Numbers sent as JSON (bodies) or as text (query strings).
HUGE = [2**63, -(2**63) - 1, 10**30, -(10**30)]
PRIORITIES_REFUSED: list[Any] = [-1, 4, *HUGE, 1.5, 4.0, 1e308, True, "1", None]
# JSON Schema counts 3.0 as an integer.
PRIORITIES_ACCEPTED: list[Any] = [0, 3, 0.0, 3.0]
LIMIT_TEXT_REFUSED = ["0", "-1", "1.5", "1e2", str(2**63), str(10**30), "x", ""]


def expected(accepted: list[Any], refused: list[Any], ok: int) -> dict[str, int]:
    return {repr(v): ok for v in accepted} | {repr(v): 422 for v in refused}


async def statuses(
    client: AsyncClient, user: UserAccount, send: Send, values: list[Any]
) -> dict[str, int]:
    return {repr(value): (await send(client, user, value)).status_code for value in values}


async def _post(client: AsyncClient, user: UserAccount, body: dict[str, Any]) -> Response:
    return await client.post("/api/todos", json={"text": "x", **body}, headers=user.headers)


async def _put(client: AsyncClient, user: UserAccount, body: dict[str, Any]) -> Response:
    todo = await create_todo(client, user)
    return await client.put(
        f"/api/todos/{todo['id']}",
        json={"text": "x", "completed": False, **body},
        headers=user.headers,
    )


async def _patch(client: AsyncClient, user: UserAccount, body: dict[str, Any]) -> Response:
    todo = await create_todo(client, user)
    return await client.patch(f"/api/todos/{todo['id']}", json=body, headers=user.headers)


WRITES = {"POST": _post, "PUT": _put, "PATCH": _patch}


def _listing(name: str, path: str = "/api/todos") -> Send:
    async def send(client: AsyncClient, user: UserAccount, value: Any) -> Response:
        return await client.get(path, params={name: value}, headers=user.headers)

    return send


@pytest.mark.parametrize("method", WRITES)
async def test_due_in_a_body(client: AsyncClient, alice: UserAccount, method: str) -> None:
    write = WRITES[method]
    ok = 201 if method == "POST" else 200

    async def send(client: AsyncClient, user: UserAccount, due: Any) -> Response:
        response = await write(client, user, {"due": due})
        if response.status_code == ok:
            assert response.json()["due"] == due
        return response

    values = DUES_ACCEPTED + DUES_REFUSED
    assert await statuses(client, alice, send, values) == expected(DUES_ACCEPTED, DUES_REFUSED, ok)


@pytest.mark.parametrize("method", WRITES)
async def test_priority_in_a_body(client: AsyncClient, alice: UserAccount, method: str) -> None:
    write = WRITES[method]
    ok = 201 if method == "POST" else 200

    async def send(client: AsyncClient, user: UserAccount, priority: Any) -> Response:
        return await write(client, user, {"priority": priority})

    values = [*PRIORITIES_ACCEPTED, *PRIORITIES_REFUSED]
    assert await statuses(client, alice, send, values) == expected(
        PRIORITIES_ACCEPTED, PRIORITIES_REFUSED, ok
    )


@pytest.mark.parametrize("name", ["due_before", "due_after"])
async def test_due_bounds_in_a_listing(client: AsyncClient, alice: UserAccount, name: str) -> None:
    values = DUES_ACCEPTED + DUES_REFUSED
    assert await statuses(client, alice, _listing(name), values) == expected(
        DUES_ACCEPTED, DUES_REFUSED, 200
    )


@pytest.mark.parametrize(
    ("name", "path", "accepted"),
    [
        ("priority", "/api/todos", ["0", "3"]),
        ("limit", "/api/todos", ["1", "100"]),
        ("limit", "/api/mytodos", ["1", "1000"]),
    ],
)
async def test_numbers_in_a_listing(
    client: AsyncClient, alice: UserAccount, name: str, path: str, accepted: list[str]
) -> None:
    refused = [*LIMIT_TEXT_REFUSED, str(int(accepted[1]) + 1)]
    if name == "priority":
        refused = [r for r in refused if r != "0"]
    values = accepted + refused
    assert await statuses(client, alice, _listing(name, path), values) == expected(
        accepted, refused, 200
    )


async def test_updated_since(client: AsyncClient, alice: UserAccount) -> None:
    recent = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    values = {
        recent: 200,
        "9999-12-31T23:59:59.999999Z": 200,  # the future: nothing yet
        "9999-12-30T23:00:00-23:59": 200,
        "0001-01-01T00:00:00Z": 410,  # beyond the tombstone retention
        "0001-01-02T00:00:00+23:59": 410,
        **dict.fromkeys(DUES_REFUSED, 422),
        "2026-01-01": 422,  # a date is not an instant here
        "1700000000": 422,  # nor a Unix time
        "2026-01-01 00:00:00Z": 422,
    }
    got = await statuses(client, alice, _listing("updated_since"), list(values))
    assert got == {repr(value): status for value, status in values.items()}


async def test_extreme_dues_sort_filter_and_page(client: AsyncClient, alice: UserAccount) -> None:
    dues = ["0001-01-01", "0001-01-01T00:00:00.001Z", "2026-06-01", "9999-12-31T23:59:59.999Z"]
    ids = [(await create_todo(client, alice, due=due))["id"] for due in dues]
    seen: list[str] = []
    params: dict[str, Any] = {"sort": "due", "order": "asc", "limit": 1}
    while True:
        page = await client.get("/api/todos", params=params, headers=alice.headers)
        assert page.status_code == 200, page.text
        seen.extend(item["id"] for item in page.json()["items"])
        if page.json()["next_cursor"] is None:
            break
        params["cursor"] = page.json()["next_cursor"]
    assert seen == ids
    bounded = await client.get(
        "/api/todos",
        params={"due_after": "0001-01-01T00:00:00.001Z", "due_before": "9999-12-31"},
        headers=alice.headers,
    )
    assert [item["id"] for item in bounded.json()["items"]] == [ids[2], ids[1]]


# ---- values inside a well-formed cursor ----

JUNK: list[Any] = [
    *HUGE,
    1.5,
    1e308,
    True,
    "x",
    [],
    {},
    [[[1]]],
    {"$gt": 1},
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00+01:00",
    "2026-01-01T00:00:00",
    "ffffffffffffffffffffffffff",
]


def _payload(cursor: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    )
    return payload


def _with_key(cursor: str, index: int, value: Any) -> str:
    payload = _payload(cursor)
    key = list(payload["k"])
    key[index] = value
    return encode_cursor(key, payload["f"], payload.get("x"))


async def _cursor_and_params(
    client: AsyncClient, user: UserAccount, params: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    for i in range(2):
        await create_todo(client, user, f"t{i}", due="2026-12-01", priority=1)
    first = await client.get("/api/todos", params={**params, "limit": 1}, headers=user.headers)
    assert first.status_code == 200, first.text
    cursor: str = first.json()["next_cursor"]
    assert cursor is not None
    return cursor, {**params, "limit": 1}


LISTINGS = {
    "created": {"sort": "created"},
    "updated": {"sort": "updated"},
    "due": {"sort": "due", "order": "asc"},
    "priority": {"sort": "priority"},
    "delta": {"updated_since": "2020-01-01T00:00:00Z"},
}
# Values that fit a key position: they are used (200), not refused.
FITTING = {"due_at": [None, "0001-01-01T00:00:00.000+00:00", "9999-12-31T23:59:59.999+00:00"]}


@pytest.mark.parametrize("listing", LISTINGS)
async def test_junk_in_a_cursor_key_is_400(
    client: AsyncClient, alice: UserAccount, listing: str, clock: Any
) -> None:
    params = dict(LISTINGS[listing])
    if "updated_since" in params:
        params["updated_since"] = (clock() - timedelta(days=1)).isoformat()
    cursor, params = await _cursor_and_params(client, alice, params)
    names = {
        "created": ["_id"],
        "updated": ["updated_at", "_id"],
        "due": ["due_rank", "due_at", "_id"],
        "priority": ["priority", "_id"],
        "delta": ["updated_at", "_id"],
    }[listing]
    assert len(_payload(cursor)["k"]) == len(names)
    got: dict[tuple[str, str], int] = {}
    want: dict[tuple[str, str], int] = {}
    for index, name in enumerate(names):
        for value in [*JUNK, *FITTING.get(name, [])]:
            response = await client.get(
                "/api/todos",
                params={**params, "cursor": _with_key(cursor, index, value)},
                headers=alice.headers,
            )
            got[name, repr(value)] = response.status_code
            want[name, repr(value)] = 200 if value in FITTING.get(name, []) else 400
    assert got == want


@pytest.mark.parametrize(
    "watermark",
    [
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T00:00:00+01:00",
        "2026-01-01T00:00:00",
        "junk",
        10**30,
        1.5,
        None,
        [],
        {"w": 1},
    ],
)
@pytest.mark.mock_only
async def test_junk_as_a_delta_watermark_is_400(
    client: AsyncClient, alice: UserAccount, clock: Any, watermark: Any
) -> None:
    since = (clock() - timedelta(days=1)).isoformat()
    cursor, params = await _cursor_and_params(client, alice, {"updated_since": since})
    payload = _payload(cursor)
    bad = encode_cursor(payload["k"], payload["f"], {"w": watermark})
    response = await client.get(
        "/api/todos", params={**params, "cursor": bad}, headers=alice.headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "Invalid cursor"


async def test_a_watermark_at_the_end_of_time_is_used(
    client: AsyncClient, alice: UserAccount, clock: Any
) -> None:
    since = (clock() - timedelta(days=1)).isoformat()
    cursor, params = await _cursor_and_params(client, alice, {"updated_since": since})
    payload = _payload(cursor)
    far = encode_cursor(payload["k"], payload["f"], {"w": "9999-12-31T23:59:59.999+00:00"})
    response = await client.get(
        "/api/todos", params={**params, "cursor": far}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["watermark"] == "9999-12-31T23:59:59.999000Z"


@pytest.mark.parametrize("params", [{}, {"updated_since": "2020-01-01T00:00:00Z"}])
@pytest.mark.mock_only
async def test_an_empty_cursor_is_400(
    client: AsyncClient, alice: UserAccount, params: dict[str, str]
) -> None:
    # The documented pattern needs at least one character: "" is a bad cursor, not none.
    if params:
        params = {"updated_since": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
    response = await client.get(
        "/api/todos", params={**params, "cursor": ""}, headers=alice.headers
    )
    assert response.status_code == 400, response.text


@pytest.mark.mock_only
async def test_the_schema_states_every_number_bound(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    for model in ("TodoCreate", "TodoReplace", "TodoUpdate"):
        priority = schemas[model]["properties"]["priority"]
        assert (priority["type"], priority["minimum"], priority["maximum"]) == ("integer", 0, 3)
