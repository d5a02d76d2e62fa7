import pytest
from bson import ObjectId

from service.pagination import InvalidCursorError, decode_cursor, encode_cursor


def test_a_cursor_round_trips_to_its_id() -> None:
    last_id = ObjectId()
    cursor = encode_cursor(last_id)
    assert len(cursor) == 16
    assert decode_cursor(cursor) == last_id


@pytest.mark.parametrize("cursor", ["", "short", "A" * 15 + "\n", "+" * 16, "A" * 16 + "\n"])
def test_anything_but_16_base64url_characters_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor)
