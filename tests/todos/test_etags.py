import pytest

from service.todos.etags import MalformedConditionError, etag, if_match_versions, none_match


def test_an_etag_is_the_quoted_version() -> None:
    assert etag(3) == '"3"'


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        (None, None),
        ("*", None),
        ('"3"', [3]),
        ('"3", "5"', [3, 5]),
        ('"3",\t"5"', [3, 5]),
        (', "3",, "5" ,', [3, 5]),  # empty list elements are allowed (RFC 9110 5.6.1)
        ('W/"3"', []),
        ('"abc"', []),
        ('"a,b", "7"', [7]),  # a comma inside an entity tag is part of it
        ('"-1"', []),
        ('"07"', []),  # not the ETag of version 7: comparison is character by character
        ('"\xb2"', []),  # obs-text: "²" is not a version
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


@pytest.mark.parametrize(
    "header",
    [
        "3",
        "",
        " ",
        "**",
        '*, "3"',
        '"3',
        '3"',
        'w/"3"',
        'W/ "3"',
        '"3" "4"',
        '"3";"4"',
        '"a"b"',
        ",",
    ],
)
def test_a_malformed_condition_is_refused(header: str) -> None:
    with pytest.raises(MalformedConditionError):
        if_match_versions(header)
    with pytest.raises(MalformedConditionError):
        none_match(header, 3)
