"""challenge.py: RFC 6750 challenges that nothing can break out of; the problem bodies that
go with them (_respond.py)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import problem_body
from sysdesign_kit.gateway.challenge import bearer_challenge, challenge, quoted, safe_text


def test_bearer_challenges() -> None:
    assert bearer_challenge() == b"Bearer"
    assert bearer_challenge(realm="api") == b'Bearer realm="api"'
    assert bearer_challenge(realm="api", description="ignored without an error") == (
        b'Bearer realm="api"'
    )
    assert bearer_challenge(realm="api", error="invalid_token", description="expired") == (
        b'Bearer realm="api", error="invalid_token", error_description="expired"'
    )
    assert bearer_challenge(error="insufficient_scope", scope="read write") == (
        b'Bearer error="insufficient_scope", scope="read write"'
    )


def test_unsafe_characters_are_dropped_and_text_cut() -> None:
    assert safe_text('a"b\\c\r\nd\x00e\u00e9f\tg') == "abcdefg"
    assert quoted('say "hi"') == '"say hi"'
    assert len(safe_text("x" * 500)) == 200


@given(st.text())
def test_any_text_stays_one_quoted_string(text: str) -> None:
    value = challenge("Bearer", error_description=text)
    inner = value.removeprefix(b'Bearer error_description="').removesuffix(b'"')
    assert b'"' not in inner
    assert b"\\" not in inner
    assert all(0x20 <= byte <= 0x7E for byte in value)


def test_names_must_be_tokens() -> None:
    with pytest.raises(ConfigurationError, match="scheme"):
        challenge("Bear er")
    with pytest.raises(ConfigurationError, match="parameter"):
        challenge("Bearer", **{"bad name": "x"})


def test_problem_body() -> None:
    body = msgspec.json.decode(problem_body(401, 'bad "token"\n', {"hint": 1}))
    assert body == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": 'bad "token"\n',
        "hint": 1,
    }


def test_problem_titles_for_any_status() -> None:
    assert msgspec.json.decode(problem_body(503, "down"))["title"] == "Service Unavailable"
    assert msgspec.json.decode(problem_body(413, "big"))["title"] == "Content Too Large"
    assert msgspec.json.decode(problem_body(599, "odd"))["title"] == "Error"
