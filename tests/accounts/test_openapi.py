"""The OpenAPI document describes the session, account and throttling routes."""

from typing import Any

import pytest

from service.app import create_app
from service.config import Settings
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture(scope="module")
def paths() -> dict[str, Any]:
    settings = Settings(_env_file=None, secret_key=TEST_SECRET_KEY)  # type: ignore[arg-type]  # str → SecretStr
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema["paths"]  # type: ignore[no-any-return]  # JSON


# Every route with a body also documents 400 (undecodable body) and 413 (and 415 for a JSON
# body), and every route that needs the database 503 (service/app.py adds those in one place).
@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("post", "/api/token", {"200", "400", "401", "413", "422", "429", "503"}),
        ("post", "/api/token/refresh", {"200", "400", "401", "413", "415", "422", "429", "503"}),
        ("post", "/api/logout", {"204", "401", "503"}),
        ("post", "/api/logout/all", {"204", "401", "503"}),
        ("get", "/api/sessions", {"200", "401", "422", "503"}),
        ("delete", "/api/sessions/{session_id}", {"204", "401", "404", "422", "503"}),
        ("post", "/api/users", {"201", "400", "409", "413", "415", "422", "429", "503"}),
        ("patch", "/api/me", {"200", "400", "401", "409", "413", "415", "422", "429", "503"}),
        ("put", "/api/me/password", {"204", "400", "401", "413", "415", "422", "429", "503"}),
        ("delete", "/api/me", {"204", "400", "401", "413", "415", "422", "429", "503"}),
    ],
)
def test_routes_document_their_responses(
    paths: dict[str, Any], method: str, path: str, codes: set[str]
) -> None:
    operation = paths[path][method]
    assert operation["summary"]
    assert operation["description"]
    assert set(operation["responses"]) == codes


def test_token_response_documents_the_refresh_token(paths: dict[str, Any]) -> None:
    ok = paths["/api/token"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/Token")


def test_session_ids_in_paths_are_documented_as_random_ids(paths: dict[str, Any]) -> None:
    (parameter,) = paths["/api/sessions/{session_id}"]["delete"]["parameters"]
    assert parameter["schema"]["pattern"] == "^[A-Za-z0-9_-]{22}$"
