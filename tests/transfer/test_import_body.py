"""The import's body: bounded by IMPORT_MAX_BYTES (not MAX_BODY_BYTES), parsed off the event
loop, a bounded number at once."""

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient

from service.app import create_app
from service.config import Settings
from service.errors import ImportsBusy
from service.transfer import service as transfer_service
from service.transfer.parsing import ImportParser
from service.transfer.schemas import ImportFile
from tests.transfer.conftest import export_file, todo
from tests.utils import UserAccount

pytestmark = pytest.mark.mock_only  # HTTP plumbing and parsing: no query matters

IMPORT_LIMIT = 8192
BODY_LIMIT = 2048
LIMITS = {"import_max_bytes": IMPORT_LIMIT, "max_body_bytes": BODY_LIMIT}
JSON = {"Content-Type": "application/json"}


def body_of_size(size: int) -> bytes:
    """A valid export file of exactly `size` bytes (its one todo's notes fill it up)."""
    empty = json.dumps(export_file({"name": "L", "todos": [todo("t", notes="")]})).encode()
    body = json.dumps(
        export_file({"name": "L", "todos": [todo("t", notes="n" * (size - len(empty)))]})
    ).encode()
    assert len(body) == size
    return body


async def _post(client: AsyncClient, user: UserAccount, content: Any) -> Any:
    return await client.post("/api/import", content=content, headers={**user.headers, **JSON})


def _streamed(body: bytes) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    return chunks()


@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_an_import_at_import_max_bytes_is_accepted(
    client: AsyncClient, alice: UserAccount
) -> None:
    """Over MAX_BODY_BYTES, which bounds every other route, and within IMPORT_MAX_BYTES."""
    response = await _post(client, alice, body_of_size(IMPORT_LIMIT))
    assert response.status_code == 201, response.text
    streamed = await _post(client, alice, _streamed(body_of_size(IMPORT_LIMIT)))
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 201, streamed.text


@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_an_import_past_import_max_bytes_is_413(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _post(client, alice, body_of_size(IMPORT_LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large"}


@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_a_streamed_import_past_import_max_bytes_is_413(
    client: AsyncClient, alice: UserAccount
) -> None:
    response = await _post(client, alice, _streamed(body_of_size(IMPORT_LIMIT + 1)))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large"}


@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_other_routes_keep_max_body_bytes(client: AsyncClient, alice: UserAccount) -> None:
    body = json.dumps({"text": "x", "notes": "n" * BODY_LIMIT}).encode()
    assert BODY_LIMIT < len(body) < IMPORT_LIMIT
    response = await client.post("/api/todos", content=body, headers={**alice.headers, **JSON})
    assert response.status_code == 413
    streamed = await client.post(
        "/api/todos", content=_streamed(body), headers={**alice.headers, **JSON}
    )
    assert streamed.status_code == 413


async def test_an_export_of_import_max_todos_fits_the_default_limit(
    client: AsyncClient, alice: UserAccount
) -> None:
    """5000 todos as an export writes them (ids, timestamps, a short text, notes): past 1 MiB,
    the default MAX_BODY_BYTES, which used to refuse it."""
    exported = {
        "id": "6560f0c2a1b2c3d4e5f60718",
        "created_by": "6560f0c2a1b2c3d4e5f60719",
        "text": "buy milk",
        "notes": "from the corner shop",
        "completed": False,
        "completed_at": None,
        "due": None,
        "priority": 0,
        "tags": ["home"],
        "created_at": "2026-12-01T09:00:00.123000Z",
        "updated_at": "2026-12-01T09:00:00.123000Z",
        "version": 1,
    }
    body = json.dumps(
        export_file({"name": "Inbox", "default": True, "todos": [exported] * 5000})
    ).encode()
    assert len(body) > Settings.model_fields["max_body_bytes"].default
    response = await _post(client, alice, body)
    assert response.status_code == 201, response.text
    assert response.json() == {"lists": 0, "todos": 5000}


@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_parallel_oversized_imports_leave_the_service_serving(
    client: AsyncClient, alice: UserAccount
) -> None:
    oversized = body_of_size(IMPORT_LIMIT + 1)
    responses = await asyncio.gather(
        *(_post(client, alice, _streamed(oversized)) for _ in range(10)),
        *(_post(client, alice, oversized) for _ in range(10)),
    )
    assert {response.status_code for response in responses} == {413}
    assert (await client.get("/api/health")).status_code == 200
    fits = await _post(client, alice, body_of_size(IMPORT_LIMIT))
    assert fits.status_code == 201


async def test_the_file_is_parsed_off_the_event_loop(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real = transfer_service.validate_import

    def recording(raw: bytes, settings: Settings) -> ImportFile:
        threads.append(threading.get_ident())
        return real(raw, settings)

    monkeypatch.setattr(transfer_service, "validate_import", recording)
    response = await _post(client, alice, json.dumps(export_file({"name": "L"})).encode())
    assert response.status_code == 201
    assert threads
    assert threads != [threading.get_ident()]


async def test_an_import_past_the_parse_queue_is_503_at_once(settings: Settings) -> None:
    parser = ImportParser(concurrency=1, queue=1)
    release = threading.Event()
    started = threading.Event()

    def slow(raw: bytes, settings: Settings) -> ImportFile:
        started.set()
        release.wait(5)
        return ImportFile.model_validate_json(raw)

    raw = json.dumps(export_file()).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer_service, "validate_import", slow)
        running = asyncio.create_task(parser.parse(raw, settings))
        waiting = asyncio.create_task(parser.parse(raw, settings))
        await asyncio.to_thread(started.wait, 5)
        assert parser.in_flight == 2
        with pytest.raises(ImportsBusy):
            await parser.parse(raw, settings)
        release.set()
        assert (await running).lists == []
        assert (await waiting).lists == []
    assert parser.in_flight == 0


async def test_a_busy_parser_answers_503_with_retry_after(
    client: AsyncClient, alice: UserAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def busy(self: ImportParser, raw: bytes, settings: Settings) -> ImportFile:
        raise ImportsBusy

    monkeypatch.setattr(ImportParser, "parse", busy)
    response = await _post(client, alice, json.dumps(export_file()).encode())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"detail": "Too many imports at once; try again shortly"}


def test_openapi_documents_the_import_limits(settings: Settings) -> None:
    schema = create_app(settings).openapi()
    responses = schema["paths"]["/api/import"]["post"]["responses"]
    assert "IMPORT_MAX_BYTES" in responses["413"]["description"]
    assert "Too many imports at once" in responses["503"]["description"]
    assert "Retry-After" in responses["503"]["headers"]
    assert "IMPORT_MAX_BYTES" in schema["paths"]["/api/import"]["post"]["description"]
