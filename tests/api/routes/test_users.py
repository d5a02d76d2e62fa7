from typing import Any

import pytest
from httpx import AsyncClient

from service.models import User
from tests.utils import DEFAULT_PASSWORD, create_account, new_email, sign_up


def signup_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": new_email(),
        "fname": "Grace",
        "lname": "Hopper",
        "password": DEFAULT_PASSWORD,
    }
    body.update(overrides)
    return body


async def test_signup_returns_the_public_user(client: AsyncClient) -> None:
    response = await client.post("/api/users", json=signup_body(email="Grace@Example.COM"))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "fname", "lname", "created_at"}
    assert body["email"] == "grace@example.com"
    assert (body["fname"], body["lname"]) == ("Grace", "Hopper")
    assert body["created_at"].endswith("Z")


async def test_signup_stores_an_argon2_hash_never_the_password(client: AsyncClient) -> None:
    body = await sign_up(client)
    user = await User.find_one(User.email == body["email"])
    assert user is not None
    assert user.hashed_password.startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in user.hashed_password


async def test_signup_with_a_taken_email_in_other_case_is_409(client: AsyncClient) -> None:
    await sign_up(client, email="dup@example.com")
    response = await client.post("/api/users", json=signup_body(email="DUP@Example.com"))
    assert response.status_code == 409
    assert response.json() == {"detail": "Email already registered."}
    assert await User.find(User.email == "dup@example.com").count() == 1


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"email": "not-an-email"}, id="invalid-email"),
        pytest.param({"fname": ""}, id="empty-fname"),
        pytest.param({"lname": "   "}, id="blank-lname"),
        pytest.param({"fname": "x" * 101}, id="long-fname"),
        pytest.param({"password": "short"}, id="short-password"),
        pytest.param({"password": "p" * 129}, id="129-char-password"),
        pytest.param({"id": "6b06a170fc44c9818f5bc95c"}, id="unknown-field-id"),
        pytest.param({"hashed_password": "x"}, id="unknown-field-hash"),
    ],
)
async def test_signup_rejects_invalid_input_with_422(
    client: AsyncClient, overrides: dict[str, Any]
) -> None:
    response = await client.post("/api/users", json=signup_body(**overrides))
    assert response.status_code == 422
    assert await User.count() == 0


@pytest.mark.parametrize("missing", ["email", "fname", "lname", "password"])
async def test_signup_without_a_field_is_422(client: AsyncClient, missing: str) -> None:
    body = signup_body()
    del body[missing]
    response = await client.post("/api/users", json=body)
    assert response.status_code == 422


async def test_signup_accepts_a_128_character_password(client: AsyncClient) -> None:
    response = await client.post("/api/users", json=signup_body(password="p" * 128))
    assert response.status_code == 201


async def test_validation_errors_never_echo_the_password(client: AsyncClient) -> None:
    secret = "tiny"
    long_secret = "s3cr3t-" * 20
    for password in (secret, long_secret):
        response = await client.post("/api/users", json=signup_body(email="bad", password=password))
        assert response.status_code == 422
        assert password not in response.text
        assert all("input" not in error for error in response.json()["detail"])


async def test_me_returns_the_current_user(client: AsyncClient) -> None:
    account = await create_account(client)
    response = await client.get("/api/me", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == account.id
    assert body["email"] == account.email
    assert "hashed_password" not in body


async def test_me_without_a_token_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
