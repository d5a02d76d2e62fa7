import asyncio
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pwdlib.hashers.bcrypt import BcryptHasher

from service.accounts import passwords
from service.accounts.passwords import (
    PasswordHasher,
    PasswordHasherBusy,
    hash_password,
    verify_password,
)
from service.accounts.tokens import (
    ExpiredTokenError,
    InvalidTokenError,
    TokenSettings,
    create_access_token,
    decode_access_token,
)
from tests.utils import Gate

SESSION_ID = "0123456789abcdef01234567"
TOKENS = TokenSettings(
    key="k" * 64, issuer="todo-service", audience="todo-service", expires=timedelta(minutes=5)
)

pytestmark = pytest.mark.production_hasher  # the hashing tests here test production's hasher


def test_new_hashes_are_argon2id() -> None:
    hashed = hash_password("a password")
    assert hashed.startswith("$argon2id$")
    assert verify_password("a password", hashed) == (True, None)
    assert verify_password("another one", hashed) == (False, None)


def test_bcrypt_hashes_verify_and_come_with_an_argon2_upgrade() -> None:
    legacy = BcryptHasher(rounds=4).hash("old password")
    valid, upgraded = verify_password("old password", legacy)
    assert valid
    assert upgraded is not None
    assert upgraded.startswith("$argon2id$")
    assert verify_password("old password", upgraded) == (True, None)


def test_a_wrong_password_against_bcrypt_gets_no_upgrade() -> None:
    legacy = BcryptHasher(rounds=4).hash("old password")
    assert verify_password("wrong", legacy) == (False, None)


def test_bcrypt_never_matches_a_password_longer_than_72_bytes() -> None:
    legacy = BcryptHasher(rounds=4).hash("a" * 72)
    assert verify_password("a" * 73, legacy) == (False, None)


async def test_password_hasher_hashes_in_a_worker_thread() -> None:
    hasher = PasswordHasher(concurrency=1, queue=0)
    hashed = await hasher.hash("threaded password")
    assert await hasher.verify("threaded password", hashed) == (True, None)


def test_a_token_round_trips_its_subject() -> None:
    token = create_access_token("abc", TOKENS, session_id=SESSION_ID)
    claims = decode_access_token(token, TOKENS)
    assert claims["sub"] == "abc"
    assert claims["iss"] == claims["aud"] == "todo-service"
    assert claims["exp"] - claims["iat"] == 300


def test_two_tokens_have_different_ids() -> None:
    first = decode_access_token(create_access_token("abc", TOKENS, session_id=SESSION_ID), TOKENS)
    second = decode_access_token(create_access_token("abc", TOKENS, session_id=SESSION_ID), TOKENS)
    assert first["jti"] != second["jti"]


def test_an_expired_token_is_refused_as_expired() -> None:
    token = create_access_token(
        "abc", TOKENS, session_id=SESSION_ID, now=datetime.now(UTC) - timedelta(minutes=10)
    )
    with pytest.raises(ExpiredTokenError):
        decode_access_token(token, TOKENS)


def test_an_expired_token_with_another_flaw_is_not_called_expired() -> None:
    wrong_issuer = TokenSettings(
        key=TOKENS.key, issuer="someone-else", audience=TOKENS.audience, expires=TOKENS.expires
    )
    token = create_access_token(
        "abc", wrong_issuer, session_id=SESSION_ID, now=datetime.now(UTC) - timedelta(minutes=10)
    )
    with pytest.raises(InvalidTokenError) as refused:
        decode_access_token(token, TOKENS)
    assert not isinstance(refused.value, ExpiredTokenError)


def test_a_token_with_a_non_string_subject_is_refused() -> None:
    now = datetime.now(UTC)
    token = jwt.encode(
        {"sub": 5, "iat": now, "exp": now + timedelta(minutes=1), "iss": "todo-service"}
        | {"aud": "todo-service", "typ": "access", "sid": SESSION_ID},
        TOKENS.key,
        algorithm="HS256",
    )
    with pytest.raises(InvalidTokenError):
        decode_access_token(token, TOKENS)


async def test_password_hasher_refuses_at_once_when_its_queue_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(lambda password: f"hashed {password}")
    monkeypatch.setattr(passwords, "hash_password", gate)
    hasher = PasswordHasher(concurrency=1, queue=2)
    try:
        # One hashing, two waiting for the slot.
        admitted = [asyncio.ensure_future(hasher.hash(f"p{i}")) for i in range(3)]
        await gate.entered()  # the first holds the slot; the others started and wait
        assert hasher.in_flight == 3
        with pytest.raises(PasswordHasherBusy):
            await hasher.hash("one too many")
        with pytest.raises(PasswordHasherBusy):
            await hasher.verify("one too many", "hash")
    finally:
        gate.open()
    assert await asyncio.gather(*admitted) == ["hashed p0", "hashed p1", "hashed p2"]
    assert hasher.in_flight == 0
    assert await hasher.hash("room again") == "hashed room again"
