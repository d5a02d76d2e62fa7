import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from httpx import AsyncClient
from pwdlib.hashers.bcrypt import BcryptHasher

from service.accounts import passwords
from service.accounts.models import User
from tests.conftest import TEST_SECRET_KEY
from tests.utils import DEFAULT_PASSWORD, create_account, log_in, sign_up


def session_of(token: str) -> str:
    sid: str = jwt.decode(token, options={"verify_signature": False})["sid"]
    return sid


def claims_for(user_id: str, session_id: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "typ": "access",
        "sub": user_id,
        "sid": session_id,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": "todo-service",
        "aud": "todo-service",
        "jti": "test",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


# Refused for the token alone, before any query: the mocked tier is enough (tests/conftest.py).
TOKEN_ONLY = pytest.mark.mock_only


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_returns_a_bearer_token(client: AsyncClient) -> None:
    user = await sign_up(client)
    response = await client.post(
        "/api/token", data={"username": user["email"], "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"]
    assert body["expires_in"] == 30 * 60


async def test_login_token_carries_the_required_claims(client: AsyncClient) -> None:
    user = await sign_up(client)
    token = await log_in(client, user["email"])
    claims = jwt.decode(token, TEST_SECRET_KEY, algorithms=["HS256"], audience="todo-service")
    assert claims["sub"] == user["id"]
    assert claims["typ"] == "access"
    assert isinstance(claims["sid"], str)
    assert claims["iss"] == "todo-service"
    assert {"exp", "iat", "jti"} <= set(claims)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


async def test_login_ignores_email_case(client: AsyncClient) -> None:
    user = await sign_up(client, email="case@example.com")
    token = await log_in(client, "  CASE@example.com ")
    response = await client.get("/api/me", headers=bearer(token))
    assert response.json()["id"] == user["id"]


async def test_wrong_password_and_unknown_email_get_the_same_401(client: AsyncClient) -> None:
    user = await sign_up(client)
    wrong = await client.post(
        "/api/token", data={"username": user["email"], "password": "wrong password"}
    )
    unknown = await client.post(
        "/api/token", data={"username": "nobody@example.com", "password": "wrong password"}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json() == {"detail": "Incorrect email or password"}
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.production_hasher
async def test_unknown_email_still_runs_one_password_verification(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_verify = passwords.verify_password

    def counting_verify(password: str, hashed: str) -> tuple[bool, str | None]:
        calls.append(hashed)
        return real_verify(password, hashed)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    response = await client.post(
        "/api/token", data={"username": "ghost@example.com", "password": "whatever123"}
    )
    assert response.status_code == 401
    assert calls == [passwords.DUMMY_HASH]


@pytest.mark.mock_only
async def test_login_without_form_fields_is_422(client: AsyncClient) -> None:
    response = await client.post("/api/token", data={"username": "a@example.com"})
    assert response.status_code == 422


@pytest.mark.production_hasher
async def test_bcrypt_hash_verifies_and_is_upgraded_to_argon2_on_login(
    client: AsyncClient,
) -> None:
    body = await sign_up(client)
    user = await User.find_one(User.email == body["email"])
    assert user is not None
    legacy_password = "imported from the old system"
    user.hashed_password = BcryptHasher(rounds=4).hash(legacy_password)
    await user.save()

    await log_in(client, body["email"], legacy_password)

    upgraded = await User.get(user.id)
    assert upgraded is not None
    assert upgraded.hashed_password.startswith("$argon2id$")
    await log_in(client, body["email"], legacy_password)


@pytest.mark.production_hasher
async def test_passwords_are_not_truncated_at_72_bytes(client: AsyncClient) -> None:
    password = "ü" * 40  # 80 bytes of UTF-8
    shares_first_72_bytes = "ü" * 36 + "xxxxxxxx"
    assert password.encode()[:72] == shares_first_72_bytes.encode()[:72]
    user = await sign_up(client, password=password)
    await log_in(client, user["email"], password)
    response = await client.post(
        "/api/token", data={"username": user["email"], "password": shares_first_72_bytes}
    )
    assert response.status_code == 401


@pytest.mark.production_hasher
async def test_password_over_72_bytes_never_matches_a_bcrypt_hash(client: AsyncClient) -> None:
    body = await sign_up(client)
    user = await User.find_one(User.email == body["email"])
    assert user is not None
    user.hashed_password = BcryptHasher(rounds=4).hash("a" * 72)
    await user.save()
    response = await client.post(
        "/api/token", data={"username": body["email"], "password": "a" * 80}
    )
    assert response.status_code == 401


# ---- tokens the current-user dependency must refuse ----


@pytest.mark.mock_only
async def test_request_without_a_token_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/todos")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Bearer", id="empty-bearer"),
        pytest.param("Bearer not-a-jwt", id="garbage"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
    ],
)
@pytest.mark.mock_only
async def test_malformed_authorization_is_401(client: AsyncClient, header: str) -> None:
    response = await client.get("/api/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("key", "overrides"),
    [
        pytest.param(
            "another-key-of-sufficient-length-0123456789", {}, id="wrong-key", marks=TOKEN_ONLY
        ),
        pytest.param(TEST_SECRET_KEY, {"iss": "someone-else"}, id="wrong-issuer", marks=TOKEN_ONLY),
        pytest.param(
            TEST_SECRET_KEY, {"aud": "someone-else"}, id="wrong-audience", marks=TOKEN_ONLY
        ),
        pytest.param(TEST_SECRET_KEY, {"exp": None}, id="no-exp", marks=TOKEN_ONLY),
        pytest.param(TEST_SECRET_KEY, {"iat": None}, id="no-iat", marks=TOKEN_ONLY),
        pytest.param(TEST_SECRET_KEY, {"iss": None}, id="no-iss", marks=TOKEN_ONLY),
        pytest.param(TEST_SECRET_KEY, {"aud": None}, id="no-aud", marks=TOKEN_ONLY),
        pytest.param(TEST_SECRET_KEY, {"sub": None}, id="no-sub", marks=TOKEN_ONLY),
        pytest.param(
            TEST_SECRET_KEY, {"sub": "not-an-object-id"}, id="sub-not-an-id", marks=TOKEN_ONLY
        ),
        pytest.param(TEST_SECRET_KEY, {"typ": None}, id="no-typ", marks=TOKEN_ONLY),
        pytest.param(TEST_SECRET_KEY, {"typ": "refresh"}, id="typ-refresh", marks=TOKEN_ONLY),
        pytest.param(TEST_SECRET_KEY, {"sid": None}, id="no-sid", marks=TOKEN_ONLY),
        pytest.param(
            TEST_SECRET_KEY, {"sid": "not-an-object-id"}, id="sid-not-an-id", marks=TOKEN_ONLY
        ),
        pytest.param(TEST_SECRET_KEY, {"sid": "0123456789abcdef01234567"}, id="unknown-sid"),
    ],
)
async def test_unusable_tokens_are_401(
    client: AsyncClient, key: str, overrides: dict[str, Any]
) -> None:
    account = await create_account(client)
    claims = claims_for(account.id, session_of(account.token), **overrides)
    token = jwt.encode(claims, key, algorithm="HS256")
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.mock_only
async def test_alg_none_token_is_401(client: AsyncClient) -> None:
    account = await create_account(client)

    def segment(data: dict[str, Any]) -> str:
        raw = json.dumps(data, default=lambda d: int(d.timestamp())).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = claims_for(account.id, session_of(account.token))
    token = f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 401


@pytest.mark.mock_only
async def test_token_signed_with_another_algorithm_is_401(client: AsyncClient) -> None:
    account = await create_account(client)
    token = jwt.encode(
        claims_for(account.id, session_of(account.token)), TEST_SECRET_KEY, algorithm="HS512"
    )
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 401


async def test_a_well_formed_hand_made_token_is_accepted(client: AsyncClient) -> None:
    # The baseline of the cases above: each of them breaks exactly one thing of this.
    account = await create_account(client)
    claims = claims_for(account.id, session_of(account.token))
    token = jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256")
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200


async def test_token_naming_another_users_session_is_401(client: AsyncClient) -> None:
    mine = await create_account(client)
    theirs = await create_account(client)
    claims = claims_for(mine.id, session_of(theirs.token))
    token = jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256")
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 401


async def test_token_of_a_deleted_user_is_401(client: AsyncClient) -> None:
    account = await create_account(client)
    user = await User.find_one(User.email == account.email)
    assert user is not None
    await user.delete()
    response = await client.get("/api/me", headers=account.headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
