import base64

import pytest

from service.core.pagination import (
    CursorMismatchError,
    InvalidCursorError,
    decode_cursor,
    encode_cursor,
    fingerprint,
)

QUERY = fingerprint({"sort": "created", "order": "desc"})


def test_a_cursor_round_trips_its_key_and_extra_values() -> None:
    cursor = encode_cursor(["65f0c0ffee0000000000beef", 3], QUERY, {"w": "2026-01-01"})
    assert decode_cursor(cursor, QUERY) == (["65f0c0ffee0000000000beef", 3], {"w": "2026-01-01"})


def test_a_cursor_is_base64url_without_padding() -> None:
    cursor = encode_cursor(["x"], QUERY)
    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_fingerprints_differ_by_query_and_ignore_key_order() -> None:
    assert fingerprint({"a": 1, "b": [2]}) == fingerprint({"b": [2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_cursor_for_another_query_is_a_mismatch() -> None:
    cursor = encode_cursor(["x"], QUERY)
    with pytest.raises(CursorMismatchError):
        decode_cursor(cursor, fingerprint({"sort": "due", "order": "desc"}))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "short!",
        "+" * 16,
        "A" * 16 + "\n",
        "A" * 1025,
        "A",
        _b64(b"not json"),
        _b64(b"[1, 2]"),
        _b64(b'{"k": 5, "f": "x"}'),
        _b64(b'{"k": [], "f": "x", "x": 3}'),
        _b64(b"\xff\xfe"),
    ],
)
def test_anything_not_made_here_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor, QUERY)
