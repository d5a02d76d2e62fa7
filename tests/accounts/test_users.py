import asyncio
from collections import Counter
from typing import Any

import pytest
from httpx import AsyncClient

from service.accounts.models import User
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


@pytest.mark.production_hasher
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
@pytest.mark.mock_only
async def test_signup_rejects_invalid_input_with_422(
    client: AsyncClient, overrides: dict[str, Any]
) -> None:
    response = await client.post("/api/users", json=signup_body(**overrides))
    assert response.status_code == 422
    assert await User.count() == 0


@pytest.mark.parametrize("missing", ["email", "fname", "lname", "password"])
@pytest.mark.mock_only
async def test_signup_without_a_field_is_422(client: AsyncClient, missing: str) -> None:
    body = signup_body()
    del body[missing]
    response = await client.post("/api/users", json=body)
    assert response.status_code == 422


async def test_signup_accepts_a_128_character_password(client: AsyncClient) -> None:
    response = await client.post("/api/users", json=signup_body(password="p" * 128))
    assert response.status_code == 201


@pytest.mark.mock_only
async def test_validation_errors_never_echo_the_password(client: AsyncClient) -> None:
    secret = "tiny"
    long_secret = "s3cr3t-" * 20
    for password in (secret, long_secret):
        response = await client.post("/api/users", json=signup_body(email="bad", password=password))
        assert response.status_code == 422
        assert password not in response.text
        assert all("input" not in error for error in response.json()["detail"])


# ---- emails: one normal form, one script ----


async def test_signup_stores_the_email_in_nfkc_then_lower_case(client: AsyncClient) -> None:
    fullwidth = "\uff27\uff32\uff21\uff23\uff25@Example.COM"  # GRACE in fullwidth letters
    response = await client.post("/api/users", json=signup_body(email=fullwidth))
    assert response.status_code == 201
    assert response.json()["email"] == "grace@example.com"


async def test_a_compatibility_look_alike_of_a_taken_email_is_409(client: AsyncClient) -> None:
    await sign_up(client, email="office@example.com")
    ligature = "o\ufb03ce@example.com"  # o + the "ffi" ligature + ce
    response = await client.post("/api/users", json=signup_body(email=ligature))
    assert response.status_code == 409
    assert await User.count() == 1


async def test_login_normalises_the_username_like_signup(client: AsyncClient) -> None:
    await sign_up(client, email="grace@example.com")
    fullwidth = " \uff27\uff32\uff21\uff23\uff25@EXAMPLE.com "
    response = await client.post(
        "/api/token", data={"username": fullwidth, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("email", "why"),
    [
        pytest.param("\u0440aypal@example.com", "local part mixes Cyrillic and Latin", id="local"),
        pytest.param("paypal@\u0440aypal.com", "domain mixes Cyrillic and Latin", id="domain"),
        pytest.param("\u03bfffice@example.com", "local part mixes Greek and Latin", id="greek"),
        pytest.param("\uff50\u0430ypal@example.com", "mixes Cyrillic and Latin", id="fullwidth"),
    ],
)
@pytest.mark.mock_only
async def test_signup_refuses_an_email_mixing_latin_with_look_alikes(
    client: AsyncClient, email: str, why: str
) -> None:
    await sign_up(client, email="paypal@example.com")
    response = await client.post("/api/users", json=signup_body(email=email))
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "email"]
    assert why in error["msg"]
    assert await User.count() == 1


@pytest.mark.parametrize(
    "email",
    [
        pytest.param(
            "\u043f\u0440\u0438\u043c\u0435\u0440@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
            id="cyrillic",
        ),
        pytest.param("\u03b1\u03b8\u03b7\u03bd\u03b1@example.gr", id="greek-local-latin-domain"),
        pytest.param("user@example.test", id="special-use-domain"),
    ],
)
async def test_signup_accepts_an_email_in_one_script_per_part(
    client: AsyncClient, email: str
) -> None:
    response = await client.post("/api/users", json=signup_body(email=email))
    assert response.status_code == 201
    assert response.json()["email"] == email


# ---- signup limit ----


@pytest.mark.parametrize("settings_overrides", [{"signup_max_per_ip": 3}])
async def test_parallel_signups_from_one_ip_never_exceed_the_limit(client: AsyncClient) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/users", json=signup_body()) for _ in range(10))
    )
    statuses = Counter(response.status_code for response in responses)
    # counters.hit counts atomically ($inc) but reads the count back afterwards, so a
    # racing request may see a later count: fewer may get through, never more.
    assert 1 <= statuses[201] <= 3
    assert statuses[429] == 10 - statuses[201]
    assert await User.count() == statuses[201]


async def test_me_returns_the_current_user(client: AsyncClient) -> None:
    account = await create_account(client)
    response = await client.get("/api/me", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == account.id
    assert body["email"] == account.email
    assert "hashed_password" not in body


@pytest.mark.mock_only
async def test_me_without_a_token_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
