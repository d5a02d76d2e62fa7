"""Request logs: one JSON line per request, with its id and route; secrets never logged."""

import json
import logging
import sys
from typing import Any

import pytest
from httpx import AsyncClient

from service.logs import JsonFormatter
from tests.utils import create_account, create_todo, log_in, sign_up

FORMATTER = JsonFormatter()


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(FORMATTER.format(record))
        for record in caplog.records
        if record.name == "service.access"
    ]


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
