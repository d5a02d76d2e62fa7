"""HTTP hygiene: security headers, request ids, body limits, CORS, docs and metrics switches."""

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from starlette.types import Message

from service.app import create_app
from service.config import Environment, Settings
from service.core.budget import current_budget
from service.core.middleware import RequestMiddleware
from service.db import MongoDatabase
from tests.utils import app_client, create_account, create_todo, sign_up

pytestmark = pytest.mark.mock_only  # HTTP plumbing: no query matters (tests/conftest.py)

SMALL_LIMIT = 2048


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


@pytest.fixture
async def small_client(settings: Settings, database: MongoDatabase) -> AsyncIterator[AsyncClient]:
    """A client for an app that takes bodies of at most SMALL_LIMIT bytes."""
    app = create_app(with_settings(settings, max_body_bytes=SMALL_LIMIT), database=database)
    async with app_client(app) as client:
        yield client


@pytest.mark.parametrize("path", ["/api/health", "/api/me", "/api/nowhere"])
async def test_security_headers_on_every_response(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers


async def test_authenticated_responses_are_not_stored(client: AsyncClient) -> None:
    user = await create_account(client)
    response = await client.get("/api/todos", headers=user.headers)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


async def test_sane_request_id_is_returned(client: AsyncClient) -> None:
    response = await client.get("/api/health", headers={"X-Request-ID": "abc-123.x:y_z"})
    assert response.headers["X-Request-ID"] == "abc-123.x:y_z"


@pytest.mark.parametrize("bad", ["", "has space", "new\tline", "x" * 129, "ü"])
async def test_insane_request_id_is_replaced(client: AsyncClient, bad: str) -> None:
    response = await client.get("/api/health", headers=[(b"X-Request-ID", bad.encode())])
    returned = response.headers["X-Request-ID"]
    assert returned != bad
    assert len(returned) == 32


async def test_request_id_is_generated_per_request(client: AsyncClient) -> None:
    first = (await client.get("/api/health")).headers["X-Request-ID"]
    second = (await client.get("/api/health")).headers["X-Request-ID"]
    assert first != second


def _signup_body(padding: int) -> bytes:
    return (
        b'{"email": "big@example.com", "fname": "A", "lname": "B", '
        b'"password": "long enough", "pad": "' + b"x" * padding + b'"}'
    )


async def test_declared_oversized_body_is_refused(small_client: AsyncClient) -> None:
    response = await small_client.post(
        "/api/users",
        content=_signup_body(SMALL_LIMIT),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_streamed_body_without_length_is_cut_off(small_client: AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    response = await small_client.post(
        "/api/users", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large"}


async def test_oversized_login_form_is_refused(small_client: AsyncClient) -> None:
    response = await small_client.post(
        "/api/token", data={"username": "a@example.com", "password": "p" * SMALL_LIMIT}
    )
    assert response.status_code == 413


async def test_body_at_the_limit_is_accepted(small_client: AsyncClient) -> None:
    body = _signup_body(0)
    body = body[:-3] + b"x" * (SMALL_LIMIT - len(body)) + body[-3:]
    assert len(body) == SMALL_LIMIT
    response = await small_client.post(
        "/api/users", content=body, headers={"Content-Type": "application/json"}
    )
    # Past the size check: the unknown "pad" field is what's wrong with it.
    assert response.status_code == 422


async def test_lying_content_length_does_not_get_past_the_limit() -> None:
    """Content-Length says 10 bytes; 3000 arrive. The app sees the 413, not the body."""
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    chunks = [b"x" * 1000] * 3
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"10")]}
    await RequestMiddleware(app, max_body_bytes=SMALL_LIMIT)(scope, receive, send)
    assert sent[0]["status"] == 413
    assert sum(map(len, seen)) <= SMALL_LIMIT


async def test_cors_allows_no_origin_by_default(client: AsyncClient) -> None:
    response = await client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_allows_configured_origins(settings: Settings, database: MongoDatabase) -> None:
    changed = Settings.model_validate(
        {**settings.model_dump(), "cors_origins": "https://app.example, https://b.example"}
    )
    assert changed.cors_origins == ["https://app.example", "https://b.example"]
    async with app_client(create_app(changed, database=database)) as client:
        preflight = await client.options(
            "/api/todos",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = await client.get("/api/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("environment", "docs_enabled", "served"),
    [
        (Environment.DEVELOPMENT, None, True),
        (Environment.PRODUCTION, None, False),
        (Environment.PRODUCTION, True, True),
        (Environment.DEVELOPMENT, False, False),
    ],
)
async def test_docs_switch(
    settings: Settings,
    database: MongoDatabase,
    environment: Environment,
    docs_enabled: bool | None,
    served: bool,
) -> None:
    changed = with_settings(settings, environment=environment, docs_enabled=docs_enabled)
    async with app_client(create_app(changed, database=database)) as client:
        for path in ["/docs", "/redoc", "/openapi.json"]:
            status = (await client.get(path)).status_code
            assert status == (200 if served else 404), path


async def test_metrics_off_in_production_by_default(client: AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 404


async def test_metrics_count_requests_by_route_template(
    settings: Settings, database: MongoDatabase
) -> None:
    changed = with_settings(settings, metrics_enabled=True)
    async with app_client(create_app(changed, database=database)) as client:
        user = await create_account(client)
        todo = await create_todo(client, user)
        await client.get(f"/api/todos/{todo['id']}", headers=user.headers)
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'todo_http_requests_total{method="GET",route="/api/todos/{todo_id}",status="200"}' in text
    )
    assert "todo_http_request_duration_seconds_bucket{" in text
    assert "todo_db_unavailable_total" in text
    assert todo["id"] not in text  # templates, not raw paths


async def test_metrics_on_in_development(settings: Settings, database: MongoDatabase) -> None:
    changed = with_settings(settings, environment=Environment.DEVELOPMENT)
    async with app_client(create_app(changed, database=database)) as client:
        assert (await client.get("/metrics")).status_code == 200


async def test_unknown_path_is_a_json_404(client: AsyncClient) -> None:
    await sign_up(client)
    response = await client.get("/api/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_unexpected_error_is_a_json_500_with_request_id(
    settings: Settings, database: MongoDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, database=database)

    async def broken() -> None:
        raise RuntimeError("internal detail")

    app.add_api_route("/api/broken", broken)
    async with app_client(app) as client:
        response = await client.get("/api/broken", headers={"X-Request-ID": "oops-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "internal detail" not in response.text
    assert response.headers["X-Request-ID"] == "oops-1"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    (record,) = [r for r in caplog.records if r.message == "unhandled error"]
    assert record.request_id == "oops-1"  # type: ignore[attr-defined]  # via extra=


async def test_openapi_declares_413_and_503_where_they_can_happen(
    settings: Settings, database: MongoDatabase
) -> None:
    changed = with_settings(settings, docs_enabled=True)
    async with app_client(create_app(changed, database=database)) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    create = paths["/api/todos"]["post"]["responses"]
    assert {"400", "413", "503"} <= set(create)
    assert "Retry-After" in create["503"]["headers"]
    assert "413" not in paths["/api/todos"]["get"]["responses"]
    assert "503" in paths["/api/me"]["get"]["responses"]
    assert "503" not in paths["/api/health"]["get"]["responses"]
    assert paths["/api/ready"]["get"]["responses"]["503"]["content"]


SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def assert_marked(response: Any, request_id: str) -> None:
    """The request id and the security headers, each exactly once."""
    assert response.headers.get_list("X-Request-ID") == [request_id]
    for name, value in SECURITY.items():
        assert response.headers.get_list(name) == [value], name


async def test_every_early_answer_carries_the_request_id_and_security_headers(
    small_client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """405, 415, form 422 and 413 are answered before the app runs, in the same one pass."""
    answers = {
        "r-405": ("PUT", "/api/health", {}, b"", 405),
        "r-415": ("POST", "/api/todos", {"Content-Type": "text/plain"}, b"{}", 415),
        "r-422": ("POST", "/api/token", {"Content-Type": "application/json"}, b"{}", 422),
        "r-413": (
            "POST",
            "/api/users",
            {"Content-Type": "application/json"},
            _signup_body(SMALL_LIMIT),
            413,
        ),
        "r-404": ("GET", "/api/nowhere", {}, b"", 404),
    }
    with caplog.at_level(logging.INFO, logger="service.access"):
        for request_id, (method, path, headers, body, status) in answers.items():
            response = await small_client.request(
                method, path, content=body, headers={**headers, "X-Request-ID": request_id}
            )
            assert response.status_code == status, (request_id, response.text)
            assert_marked(response, request_id)
            assert response.headers["Cache-Control"] == "no-store"
    logged = {
        record.request_id: record.status  # type: ignore[attr-defined]  # via extra=
        for record in caplog.records
        if record.name == "service.access"
    }
    assert logged == {request_id: answer[-1] for request_id, answer in answers.items()}


async def test_a_raw_apps_own_headers_are_kept_and_its_request_id_replaced() -> None:
    """A route's own Cache-Control stays; an X-Request-ID it sets is replaced in place (once);
    the header list the app sent is not changed (a response may be sent again)."""
    own = [
        (b"cache-control", b"max-age=60"),
        (b"x-request-id", b"from-the-app"),
        (b"x-other", b"1"),
        (b"x-request-id", b"again"),
    ]
    original = list(own)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": own})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"id-1")]}
    await RequestMiddleware(app, max_body_bytes=SMALL_LIMIT)(scope, receive, send)
    assert sent[0]["headers"] == [
        (b"cache-control", b"max-age=60"),
        (b"x-request-id", b"id-1"),
        (b"x-other", b"1"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]
    assert own == original


async def test_the_request_runs_on_its_database_budget(
    settings: Settings, database: MongoDatabase
) -> None:
    app = create_app(with_settings(settings, request_db_budget_ms=1500), database=database)
    seen: list[float | None] = []

    async def probe() -> None:
        budget = current_budget()
        seen.append(None if budget is None else budget.remaining)

    app.add_api_route("/api/probe", probe)
    async with app_client(app) as client:
        assert (await client.get("/api/probe")).status_code == 200
    assert seen == [1.5]
    assert current_budget() is None  # not left behind


async def test_cors_preflight_and_checks_behind_it(
    settings: Settings, database: MongoDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """CORS answers the preflight (an OPTIONS no route serves: no 405) with the request id
    and security headers; a cross-origin 405 and 415 still get its allow-origin header."""
    changed = with_settings(settings, cors_origins=["https://app.example"])
    origin = {"Origin": "https://app.example"}
    async with app_client(create_app(changed, database=database)) as client:
        with caplog.at_level(logging.INFO, logger="service.access"):
            preflight = await client.options(
                "/api/todos",
                headers={
                    **origin,
                    "Access-Control-Request-Method": "POST",
                    "X-Request-ID": "pre-1",
                },
            )
        refused = await client.put("/api/health", headers={**origin, "X-Request-ID": "m-1"})
        wrong_type = await client.post(
            "/api/todos", content=b"{}", headers={**origin, "Content-Type": "text/plain"}
        )
    assert preflight.status_code == 200
    assert_marked(preflight, "pre-1")
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    (line,) = [
        r
        for r in caplog.records
        if r.name == "service.access" and r.request_id == "pre-1"  # type: ignore[attr-defined]
    ]
    assert (line.status, line.route) == (200, "<unmatched>")  # type: ignore[attr-defined]
    assert refused.status_code == 405
    assert_marked(refused, "m-1")
    assert refused.headers["access-control-allow-origin"] == "https://app.example"
    assert wrong_type.status_code == 415
    assert wrong_type.headers["access-control-allow-origin"] == "https://app.example"


async def test_generated_request_ids_are_hex_and_unique(client: AsyncClient) -> None:
    ids = {(await client.get("/api/health")).headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
