"""The OpenAPI document: every route is described, and Swagger UI can log in."""

from typing import Any

import pytest

from service.app import create_app
from service.config import Settings
from tests.conftest import TEST_SECRET_KEY

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    settings = Settings(_env_file=None, secret_key=TEST_SECRET_KEY)  # type: ignore[arg-type]  # str → SecretStr
    return create_app(settings).openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_every_route_has_a_summary_and_a_description(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        assert operation.get("summary"), f"{method} {path}"
        assert operation.get("description"), f"{method} {path}"


def test_every_route_declares_its_success_response_model(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        success = [code for code in operation["responses"] if code.startswith("2")]
        assert success, f"{method} {path}"
        for code in success:
            if code == "204":
                continue
            content = operation["responses"][code]["content"]
            assert content, f"{method} {path} {code}"
            for media_type in content.values():
                # An event stream describes each event (OpenAPI 3.2's itemSchema).
                described = media_type.get("schema") or media_type.get("itemSchema")
                assert described, f"{method} {path} {code}"


def test_authenticated_routes_declare_401(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        if operation.get("security"):
            assert "401" in operation["responses"], f"{method} {path}"


def test_todo_item_routes_declare_404(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        if path == "/api/todos/{todo_id}":
            assert "404" in operation["responses"], method


def test_swagger_authorize_logs_in_through_the_token_endpoint(schema: dict[str, Any]) -> None:
    [scheme] = schema["components"]["securitySchemes"].values()
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/token"


def test_expected_paths_exist(schema: dict[str, Any]) -> None:
    assert {
        "/api/users",
        "/api/token",
        "/api/me",
        "/api/todos",
        "/api/todos/{todo_id}",
        "/api/mytodos",
        "/api/health",
    } <= set(schema["paths"])


def test_the_change_feed_describes_every_event_and_its_data(schema: dict[str, Any]) -> None:
    stream = schema["paths"]["/api/todos/events"]["get"]["responses"]["200"]["content"]
    item = stream["text/event-stream"]["itemSchema"]
    variant_of = {variant["properties"]["event"]["const"]: variant for variant in item["oneOf"]}
    data_of = {event: variant["properties"]["data"] for event, variant in variant_of.items()}
    lists = {"list_created", "list_updated", "list_removed", "member_added", "member_removed"}
    assert set(data_of) == {"ready", "created", "updated", "deleted", "revoked", *lists}
    for data in data_of.values():
        assert data["contentMediaType"] == "application/json"
        assert data["contentSchema"]
    components = schema["components"]["schemas"]
    for event, model in [("created", "TodoPublic"), ("updated", "TodoPublic")]:
        assert data_of[event]["contentSchema"] == {"$ref": f"#/components/schemas/{model}"}
    assert data_of["deleted"]["contentSchema"] == {"$ref": "#/components/schemas/TodoTombstone"}
    assert {"TodoPublic", "TodoTombstone"} <= set(components)
    assert data_of["ready"]["contentSchema"]["required"] == ["resumed"]
    assert data_of["revoked"]["contentSchema"]["required"] == ["detail"]
    # List events have no id (not resumable): `ready` says which lists a stream carries.
    for event in lists:
        assert "id" not in variant_of[event]["required"]
    assert "lists" in data_of["ready"]["contentSchema"]["properties"]
    assert data_of["list_removed"]["contentSchema"]["required"] == ["id"]
    assert "heartbeat" in item["description"]
    responses = schema["paths"]["/api/todos/events"]["get"]["responses"]
    assert {"400", "401", "410", "429", "503"} <= set(responses)
