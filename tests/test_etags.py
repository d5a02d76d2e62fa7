import pytest

from service.etags import etag, if_match_versions, none_match


def test_an_etag_is_the_quoted_version() -> None:
    assert etag(3) == '"3"'


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        (None, None),
        ("*", None),
        (' "3" ', [3]),
        ('"3", "5"', [3, 5]),
        ('W/"3"', []),
        ('"abc"', []),
        ("3", []),
        ('"-1"', []),
        ('"' + "9" * 19 + '"', []),
        ('W/"3", "4"', [4]),
    ],
)
def test_if_match_compares_strongly(header: str | None, versions: list[int] | None) -> None:
    assert if_match_versions(header) == versions


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("*", True),
        ('"3"', True),
        ('W/"3"', True),
        ('"2", "3"', True),
        ('"4"', False),
    ],
)
def test_if_none_match_compares_weakly(header: str | None, matches: bool) -> None:
    assert none_match(header, 3) is matches
