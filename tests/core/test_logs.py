"""Request logs: one JSON line per request, with its id and route; secrets never logged."""

import asyncio
import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from service.core.logs import JsonFormatter
from tests.live_server import LiveServer, live_server
from tests.utils import create_account, create_todo, log_in, sign_up

FORMATTER = JsonFormatter()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(FORMATTER.format(record))
        for record in caplog.records
        if record.name == "service.access"
    ]


@pytest.mark.mock_only
async def test_one_json_line_per_request(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    user = await create_account(client)
    todo = await create_todo(client, user)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        response = await client.get(
            f"/api/todos/{todo['id']}", headers={**user.headers, "X-Request-ID": "req-42"}
        )
    assert response.status_code == 200
    (line,) = access_lines(caplog)
    assert line["request_id"] == "req-42"
    assert line["method"] == "GET"
    assert line["route"] == "/api/todos/{todo_id}"
    assert line["status"] == 200
    assert line["user_id"] == user.id
    assert line["duration_ms"] >= 0
    assert line["time"].endswith("+00:00")


@pytest.mark.mock_only
async def test_unmatched_and_anonymous_requests_are_logged(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = await client.get("/api/nowhere/12345")
    (line,) = access_lines(caplog)
    assert line["route"] == "<unmatched>"
    assert line["status"] == 404
    assert line["user_id"] is None
    assert line["request_id"] == response.headers["X-Request-ID"]


async def test_secrets_never_reach_the_logs(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    password = "s3cret-Pa55word-that-must-not-leak"
    with caplog.at_level(logging.DEBUG):
        user = await sign_up(client, password=password)
        token = await log_in(client, user["email"], password)
        wrong = await client.post(
            "/api/token", data={"username": user["email"], "password": password + "x"}
        )
        assert wrong.status_code == 401
        me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        bad = await client.get("/api/me", headers={"Authorization": f"Bearer {token}x"})
        assert bad.status_code == 401
    assert caplog.records
    logged = "\n".join(FORMATTER.format(record) for record in caplog.records)
    assert password not in logged
    assert token not in logged
    assert token.split(".")[2] not in logged  # not even the signature
    assert "Bearer" not in logged
    assert "authorization" not in logged.lower()


def test_formatter_adds_extras_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("a",), None)
        record.exc_info = sys.exc_info()
    record.route = "/api/x"
    line = json.loads(FORMATTER.format(record))
    assert line["message"] == "failed a"
    assert line["route"] == "/api/x"
    assert "ValueError: boom" in line["exception"]
    assert line["level"] == "ERROR"


def _logged(server: LiveServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]


async def test_a_served_request_is_logged_once_without_its_query_string(
    wire_url: str, tmp_path: Path
) -> None:
    marker = f"needle{uuid.uuid4().hex}"
    paths = [
        f"/api/todos?limit=5&q={marker}",
        f"/api/health?search={marker}",
        f"/api/todos/events?ticket={marker}",
        f"/api/nowhere?{marker}=1",
    ]
    async with (
        live_server(wire_url, tmp_path) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        user = await create_account(http)
        ids = [f"log-test-{n}" for n in range(len(paths))]
        for path, request_id in zip(paths, ids, strict=True):
            await http.get(path, headers={**user.headers, "X-Request-ID": request_id})
        for _ in range(100):  # the line is written just after the response is sent
            seen = [line.get("request_id") for line in _logged(server)]
            if all(request_id in seen for request_id in ids):
                break
            await asyncio.sleep(0.05)
        lines = _logged(server)
        text = server.log_text()
    for request_id in ids:
        mine = [line for line in lines if line.get("request_id") == request_id]
        assert [line["logger"] for line in mine] == ["service.access"], mine
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert marker not in text


@pytest.mark.parametrize(
    "created",
    [
        1764600000.0,
        1764600000.0004,
        1764600000.9995,
        1764600000.9999996,  # rounds up to the next second, as datetime does
        1746182376.8,  # 0.8 is 0.7999... as a float: still .800
        1764600059.9999999,
    ],
)
def test_the_time_is_iso_8601_utc_to_the_millisecond(created: float) -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    for moment in (created - 1, created, created):  # also from the per-second cache
        record.created = moment
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(record))["time"] == expected
