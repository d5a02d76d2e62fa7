"""Input rules that the OpenAPI schema states must be the ones the code enforces."""

import re
import sys

import pytest
from pydantic import ValidationError

from service.schemas import NOT_BLANK, WHITESPACE, TodoCreate


def test_whitespace_is_what_python_strips() -> None:
    python = {chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()}
    assert set(WHITESPACE) == python
    assert not any(re.search(NOT_BLANK, char) for char in WHITESPACE)


@pytest.mark.parametrize("text", [" ", "\x1f\x1f", "\u3000\t"])
def test_blank_text_is_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        TodoCreate.model_validate({"text": text})


def test_text_is_trimmed_and_limited_as_sent() -> None:
    assert TodoCreate.model_validate({"text": "\x1f a \n"}).text == "a"
    with pytest.raises(ValidationError):
        TodoCreate.model_validate({"text": " " + "a" * 1000})


def test_body_booleans_are_strict() -> None:
    with pytest.raises(ValidationError):
        TodoCreate.model_validate_json('{"text": "a", "completed": 0}')
