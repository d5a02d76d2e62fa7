"""Token helpers in service/accounts/tokens.py that sessions add: typ/sid claims, refresh tokens."""

import hashlib
from datetime import timedelta

import jwt
import pytest

from service.accounts.tokens import (
    InvalidTokenError,
    TokenSettings,
    create_access_token,
    create_refresh_token,
    decode_access_token,
    hash_refresh_token,
    is_session_id,
    new_session_id,
    refresh_token_session,
)
from tests.conftest import TEST_SECRET_KEY

TOKENS = TokenSettings(
    key=TEST_SECRET_KEY, issuer="todo-service", audience="todo-service", expires=timedelta(5)
)
SESSION = "q0F8mJ3t-Y_2vWkXb7cZ1A"  # a session id's shape: 22 base64url characters
OBJECT_ID = "0123456789abcdef01234567"


def test_access_tokens_carry_typ_access_and_the_session() -> None:
    claims = decode_access_token(create_access_token("abc", TOKENS, session_id=SESSION), TOKENS)
    assert (claims["typ"], claims["sid"], claims["sub"]) == ("access", SESSION, "abc")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"typ": "refresh"}, id="other-typ"),
        pytest.param({"typ": None}, id="no-typ"),
        pytest.param({"sid": None}, id="no-sid"),
        pytest.param({"sid": 42}, id="sid-not-a-string"),
    ],
)
def test_tokens_without_typ_access_or_sid_are_refused(changes: dict[str, object]) -> None:
    claims = jwt.decode(
        create_access_token("abc", TOKENS, session_id=SESSION),
        TEST_SECRET_KEY,
        algorithms=["HS256"],
        audience="todo-service",
    )
    claims.update(changes)
    claims = {key: value for key, value in claims.items() if value is not None}
    with pytest.raises(InvalidTokenError):
        decode_access_token(jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256"), TOKENS)


def test_refresh_tokens_name_their_session_and_differ_every_time() -> None:
    tokens = {create_refresh_token(SESSION) for _ in range(100)}
    assert len(tokens) == 100
    assert {refresh_token_session(token) for token in tokens} == {SESSION}


@pytest.mark.parametrize(
    "token",
    [
        "",
        SESSION,
        f"{SESSION}.",
        f"{SESSION}.{'A' * 42}",
        f"{SESSION}.{'A' * 44}",
        f"{OBJECT_ID}.{'A' * 43}",  # a session from before ids were random
        f"{SESSION}!.{'A' * 42}",
        f"{SESSION}.{'A' * 42}=",
        f" {SESSION}.{'A' * 43}",
    ],
)
def test_malformed_refresh_tokens_name_no_session(token: str) -> None:
    assert refresh_token_session(token) is None


def test_refresh_tokens_are_stored_as_sha256() -> None:
    token = create_refresh_token(SESSION)
    assert hash_refresh_token(token) == hashlib.sha256(token.encode()).hexdigest()


def test_new_session_ids_have_128_random_bits() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_session_id(session_id) and len(session_id) == 22 for session_id in ids)


@pytest.mark.parametrize(
    "value", [OBJECT_ID, "", "A" * 21, "A" * 23, "A" * 21 + "+", "A" * 21 + "\n"]
)
def test_anything_else_is_not_a_session_id(value: str) -> None:
    assert not is_session_id(value)
