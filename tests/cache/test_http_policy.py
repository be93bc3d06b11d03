"""The pure HTTP caching rules: Cache-Control parsing, storability and freshness, request
directives, conditional matching (RFC 9111, RFC 5861)."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.cache.http_policy import (
    etag_matches,
    not_modified_since,
    parse_cache_control,
    request_policy,
    response_policy,
)

NOW = 1_700_001_000.0


def date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=60", {"max-age": "60"}),
        ("Max-Age=60, Public", {"max-age": "60", "public": None}),
        ('private="set-cookie", max-age=5', {"private": "set-cookie", "max-age": "5"}),
        ("no-cache,,  no-store", {"no-cache": None, "no-store": None}),
        ('max-age="30"', {"max-age": "30"}),
        ("max-age=1, max-age=1", {"max-age": "1"}),
        ("", {}),
        ('ext="a\\"b"', {"ext": 'a"b'}),
    ],
)
def test_parse_cache_control(value: str, expected: dict[str, str | None]) -> None:
    assert parse_cache_control(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "max-age=abc",
        "max-age=-1",
        "max-age",
        "max-age=1.5",
        "max-age=1, max-age=2",
        's-maxage="x"',
        "stale-while-revalidate=soon",
        'private="unterminated',
        "max-age=60 junk",
        "=60",
        "max-age=",
        "max-age=٣",  # a non-ASCII digit
        "@",
    ],
)
def test_parse_cache_control_malformed(value: str) -> None:
    assert parse_cache_control(value) is None


def test_huge_max_age_is_capped_not_refused() -> None:
    policy = response_policy(200, {"cache-control": "max-age=" + "9" * 40}, now=NOW)
    assert policy.storable
    assert policy.lifetime == 2**31


# (status, response headers, storable or the reason it is not, lifetime)
CASES: list[tuple[int, dict[str, str], str | bool, float]] = [
    (200, {"cache-control": "max-age=60"}, True, 60),
    (200, {"cache-control": "public, max-age=60"}, True, 60),
    (200, {"cache-control": "max-age=60, s-maxage=10"}, True, 10),
    (200, {"cache-control": "s-maxage=120, max-age=0"}, True, 120),
    (200, {"cache-control": "max-age=31536000, immutable"}, True, 31536000),
    (200, {"cache-control": "no-store, max-age=60"}, "no-store", 0),
    (200, {"cache-control": "private, max-age=60"}, "private", 0),
    (200, {"cache-control": "no-cache, max-age=60"}, "no-cache", 0),
    (200, {"cache-control": "max-age=60", "set-cookie": "a=b"}, "set-cookie", 0),
    (200, {"cache-control": "max-age=60", "vary": "*"}, "vary *", 0),
    (200, {"cache-control": "max-age=60", "vary": "Accept, *"}, "vary *", 0),
    (200, {"cache-control": "max-age=oops"}, "malformed cache-control", 0),
    (200, {}, "no explicit freshness", 0),
    (200, {"last-modified": date(NOW - 1000)}, "no explicit freshness", 0),
    (200, {"cache-control": "max-age=0"}, "already stale", 0),
    (200, {"cache-control": "max-age=10", "age": "20"}, "already stale", 0),
    (200, {"expires": date(NOW + 30)}, True, 30),
    (200, {"expires": date(NOW + 30), "date": date(NOW - 10)}, True, 40),
    (200, {"expires": "0"}, "already stale", 0),
    (200, {"expires": date(NOW + 30), "cache-control": "max-age=5"}, True, 5),
    (204, {"cache-control": "max-age=60"}, True, 60),
    (404, {"cache-control": "max-age=60"}, True, 60),
    (410, {"cache-control": "max-age=60"}, True, 60),
    (501, {"cache-control": "max-age=60"}, True, 60),
    (201, {"cache-control": "max-age=60"}, "status", 0),
    (302, {"cache-control": "max-age=60"}, "status", 0),
    (500, {"cache-control": "max-age=60"}, "status", 0),
    (206, {"cache-control": "max-age=60"}, "status", 0),
]


@pytest.mark.parametrize(("status", "headers", "outcome", "lifetime"), CASES)
def test_response_policy(
    status: int, headers: dict[str, str], outcome: str | bool, lifetime: float
) -> None:
    policy = response_policy(status, headers, now=NOW)
    if outcome is True:
        assert policy.storable, policy.reason
        assert policy.lifetime == lifetime
    else:
        assert not policy.storable
        assert policy.reason == outcome


def test_initial_age_from_age_and_date() -> None:
    assert (
        response_policy(200, {"cache-control": "max-age=60", "age": "7"}, now=NOW).initial_age == 7
    )
    with_date = {"cache-control": "max-age=60", "date": date(NOW - 12), "age": "3"}
    assert response_policy(200, with_date, now=NOW).initial_age == 12
    delayed = {"cache-control": "max-age=60", "age": "3"}
    assert response_policy(200, delayed, now=NOW, request_time=NOW - 2).initial_age == 5
    no_age = {"cache-control": "max-age=60"}
    assert response_policy(200, no_age, now=NOW, request_time=NOW - 2).initial_age == 0
    superscript = {"cache-control": "max-age=60", "age": "²"}
    assert response_policy(200, superscript, now=NOW).initial_age == 0
    future_date = {"cache-control": "max-age=60", "date": date(NOW + 100)}
    assert response_policy(200, future_date, now=NOW).initial_age == 0


def test_stale_windows_and_revalidation() -> None:
    policy = response_policy(
        200,
        {"cache-control": "max-age=10, stale-while-revalidate=20, stale-if-error=300"},
        now=NOW,
    )
    assert (policy.stale_while_revalidate, policy.stale_if_error) == (20, 300)
    assert not policy.must_revalidate
    for value in (
        "max-age=10, must-revalidate, stale-if-error=300",
        "max-age=10, proxy-revalidate, stale-while-revalidate=20",
        "s-maxage=10, stale-while-revalidate=20",
    ):
        policy = response_policy(200, {"cache-control": value}, now=NOW)
        assert policy.must_revalidate
        assert (policy.stale_while_revalidate, policy.stale_if_error) == (0, 0)
    # Stale from the start but usable if the app fails: worth storing.
    policy = response_policy(200, {"cache-control": "max-age=0, stale-if-error=60"}, now=NOW)
    assert policy.storable
    assert policy.lifetime == 0


def test_vary_is_normalised() -> None:
    policy = response_policy(
        200, {"cache-control": "max-age=1", "vary": "Accept-Encoding, accept , X-Tenant"}, now=NOW
    )
    assert policy.vary == ("accept", "accept-encoding", "x-tenant")


def test_heuristic_freshness_only_when_configured() -> None:
    headers = {"last-modified": date(NOW - 1000), "date": date(NOW)}
    assert response_policy(200, headers, now=NOW, heuristic_fraction=0.1).lifetime == 100
    assert not response_policy(200, headers, now=NOW).storable


def test_custom_statuses() -> None:
    cc = {"cache-control": "max-age=60"}
    assert response_policy(201, cc, now=NOW, cacheable_statuses={201}).storable
    assert not response_policy(200, cc, now=NOW, cacheable_statuses={201}).storable


@pytest.mark.parametrize(
    ("headers", "use_stored", "store", "max_age", "min_fresh"),
    [
        ({}, True, True, None, 0),
        ({"cache-control": "no-cache"}, False, True, None, 0),
        ({"cache-control": "no-store"}, True, False, None, 0),
        ({"cache-control": "max-age=0"}, True, True, 0, 0),
        ({"cache-control": "max-age=30, min-fresh=5"}, True, True, 30, 5),
        ({"pragma": "no-cache"}, False, True, None, 0),
        ({"pragma": "no-cache", "cache-control": "max-age=5"}, True, True, 5, 0),
        ({"cache-control": "max-age=x"}, False, False, None, 0),
    ],
)
def test_request_policy(
    headers: dict[str, str], use_stored: bool, store: bool, max_age: float | None, min_fresh: float
) -> None:
    policy = request_policy(headers)
    assert (policy.use_stored, policy.store, policy.max_age, policy.min_fresh) == (
        use_stored,
        store,
        max_age,
        min_fresh,
    )


@pytest.mark.parametrize(
    ("header", "etag", "matches"),
    [
        ('"a"', '"a"', True),
        ('"x", "a"', '"a"', True),
        ('W/"a"', '"a"', True),
        ('"a"', 'W/"a"', True),
        ("*", '"a"', True),
        ('"b"', '"a"', False),
        ('"a"', None, False),
    ],
)
def test_etag_matches(header: str, etag: str | None, matches: bool) -> None:
    assert etag_matches(header, etag) is matches


def test_not_modified_since() -> None:
    assert not_modified_since(date(NOW), date(NOW - 10))
    assert not_modified_since(date(NOW), date(NOW))
    assert not not_modified_since(date(NOW - 10), date(NOW))
    assert not not_modified_since("garbage", date(NOW))
    assert not not_modified_since(date(NOW), None)


_FIELD_TEXT = st.text(
    alphabet=st.sampled_from(list('max-ge=s-ptivwrdlnoc,;"\\ \t0123456789*WÿĀ²٣')), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(_FIELD_TEXT)
def test_parsing_any_text_never_raises(value: str) -> None:
    directives = parse_cache_control(value)
    if directives is not None:
        for name in ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"):
            argument = directives.get(name)
            assert argument is None or argument.isdigit()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(100, 599),
    st.dictionaries(
        st.sampled_from(
            ["cache-control", "expires", "date", "age", "vary", "last-modified", "etag"]
        ),
        _FIELD_TEXT,
    ),
    st.sampled_from([None, 0.1, 1.0]),
)
def test_any_response_gets_a_decision(
    status: int, headers: dict[str, str], fraction: float | None
) -> None:
    policy = response_policy(status, headers, now=NOW, heuristic_fraction=fraction)
    if policy.storable:
        assert policy.lifetime >= 0
        assert (
            policy.lifetime
            - policy.initial_age
            + max(policy.stale_while_revalidate, policy.stale_if_error)
            > 0
        )
    request_policy(headers)
