"""Input rules that the OpenAPI schema states must be the ones the code enforces."""

import re
import sys
import unicodedata

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from service.accounts.schemas import (
    EMAIL_MAX_LENGTH,
    EMAIL_SCRIPTS,
    Email,
    UserCreate,
    UserUpdate,
    email_letters,
    email_pattern,
    letter_script,
    normalise_email,
)
from service.core.schemas import NOT_BLANK, WHITESPACE
from service.todos.schemas import TodoCreate


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


# ---- emails: the schema's pattern and length are the whole rule ----

EMAIL_FIELD = UserCreate.model_json_schema()["properties"]["email"]
# The schema as a non-Python engine reads it (Rust regex, ECMA-262 semantics for `$`).
SCHEMA_VALIDATOR = jsonschema_rs.validator_for(EMAIL_FIELD)
EMAILS = TypeAdapter(Email)


def accepted(value: str) -> bool:
    try:
        EMAILS.validate_python(value)
    except ValidationError:
        return False
    return True


def test_the_email_field_states_a_pattern_and_a_length_and_no_format() -> None:
    assert EMAIL_FIELD["pattern"] == email_pattern()
    assert EMAIL_FIELD["maxLength"] == EMAIL_MAX_LENGTH
    assert "format" not in EMAIL_FIELD
    assert UserUpdate.model_json_schema()["properties"]["email"]["pattern"] == email_pattern()


@pytest.mark.parametrize(
    ("email", "valid"),
    [
        pytest.param("user@example.test", True, id="special-use-test"),
        pytest.param("user@example.invalid", True, id="special-use-invalid"),
        pytest.param("o'brien+tag@mail-1.example.co", True, id="specials"),
        pytest.param("user@123.example", True, id="numeric-label"),
        pytest.param("user@localhost", False, id="one-label"),
        pytest.param("user@example.c", False, id="one-letter-tld"),
        pytest.param("user@example.c0m", False, id="digit-in-tld"),
        pytest.param("a..b@example.com", False, id="double-dot"),
        pytest.param(".a@example.com", False, id="leading-dot"),
        pytest.param("user@-example.com", False, id="leading-hyphen"),
        pytest.param("user@example-.com", False, id="trailing-hyphen"),
        pytest.param('"a b"@example.com', False, id="quoted"),
        pytest.param("user@[127.0.0.1]", False, id="literal"),
        pytest.param("user@example.com\n", False, id="trailing-newline"),
        pytest.param("a@" + "b" * 249 + ".com", False, id="255-characters"),
    ],
)
def test_schema_and_validation_agree_on_examples(email: str, valid: bool) -> None:
    assert SCHEMA_VALIDATOR.is_valid(email) is valid
    assert accepted(email) is valid


@given(st.from_regex(email_pattern(), fullmatch=True).filter(lambda v: len(v) <= 254))
@settings(max_examples=100, deadline=None)
def test_every_address_the_schema_allows_is_accepted_and_stays_valid(email: str) -> None:
    assert SCHEMA_VALIDATOR.is_valid(email)
    stored = EMAILS.validate_python(email)
    # The stored (normal) form is an address the schema allows, in one script per part too.
    assert re.fullmatch(email_pattern(), stored)
    assert normalise_email(stored) == stored


@given(
    st.one_of(
        st.text(max_size=40),
        st.from_regex(
            r"[a-z\u0430-\u044f\u03b1-\u03c9.@\-]{1,12}@[a-z\u0430.\-]{1,12}", fullmatch=True
        ),
    )
)
@settings(max_examples=300, deadline=None)
def test_what_the_schema_refuses_is_refused(email: str) -> None:
    assert accepted(email) is SCHEMA_VALIDATOR.is_valid(email)


def test_the_letter_scan_covers_the_whole_bmp() -> None:
    everywhere: dict[str, list[int]] = {script: [] for script in EMAIL_SCRIPTS}
    for code in range(0x10000):
        char = chr(code)
        if unicodedata.category(char).startswith("L"):
            scripts = {letter_script(c) for c in normalise_email(char)}
            if len(scripts) == 1 and (script := scripts.pop()):
                everywhere[script].append(code)
    assert email_letters() == everywhere
