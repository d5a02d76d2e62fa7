"""The OpenAPI document describes every invitation route and what it can answer."""

from typing import Any

import pytest

from service.app import create_app
from service.config import Settings
from tests.conftest import TEST_SECRET_KEY

LIST_INVITATIONS = "/api/lists/{list_id}/invitations"


@pytest.fixture(scope="module")
def paths() -> dict[str, Any]:
    settings = Settings(_env_file=None, secret_key=TEST_SECRET_KEY)  # type: ignore[arg-type]  # str → SecretStr
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema["paths"]  # type: ignore[no-any-return]  # JSON


# 400, 413 and 415 for a route with a JSON body, and 503 for any that needs the database, are
# added for every route in one place (service/app.py).
@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        (
            "post",
            LIST_INVITATIONS,
            {"202", "400", "401", "403", "404", "409", "413", "415", "422", "429", "503"},
        ),
        ("get", LIST_INVITATIONS, {"200", "401", "403", "404", "422", "503"}),
        (
            "delete",
            LIST_INVITATIONS + "/{invitation_id}",
            {"204", "401", "403", "404", "422", "503"},
        ),
        ("get", "/api/invitations", {"200", "401", "503"}),
        (
            "post",
            "/api/invitations/{invitation_id}/accept",
            {"200", "401", "404", "409", "422", "503"},
        ),
        ("post", "/api/invitations/{invitation_id}/decline", {"204", "401", "404", "422", "503"}),
    ],
)
def test_routes_document_their_responses(
    paths: dict[str, Any], method: str, path: str, codes: set[str]
) -> None:
    operation = paths[path][method]
    assert operation["summary"]
    assert operation["description"]
    assert set(operation["responses"]) == codes


def test_invitation_ids_in_paths_are_documented_as_random_ids(paths: dict[str, Any]) -> None:
    for path, method in (
        (LIST_INVITATIONS + "/{invitation_id}", "delete"),
        ("/api/invitations/{invitation_id}/accept", "post"),
        ("/api/invitations/{invitation_id}/decline", "post"),
    ):
        [parameter] = [
            p
            for p in paths[path][method]["parameters"]
            if p["in"] == "path" and p["name"] == "invitation_id"
        ]
        assert parameter["schema"]["pattern"] == "^[A-Za-z0-9_-]{32}$"


def test_an_invitation_offers_the_editor_or_viewer_role(paths: dict[str, Any]) -> None:
    body = paths[LIST_INVITATIONS]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/InvitationCreate")
    settings = Settings(_env_file=None, secret_key=TEST_SECRET_KEY)  # type: ignore[arg-type]  # str → SecretStr
    schemas = create_app(settings).openapi()["components"]["schemas"]
    assert schemas["InvitationCreate"]["properties"]["role"]["enum"] == ["editor", "viewer"]
    assert schemas["InvitationCreate"]["additionalProperties"] is False
