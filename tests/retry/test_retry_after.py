"""Retry-After: delay-seconds and HTTP-dates against an injected wall clock; the default hook."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sysdesign_kit.errors import RateLimited
from sysdesign_kit.retry import Outcome, default_retry_after, parse_retry_after

# Wed, 21 Oct 2015 07:28:00 GMT
NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        (b"3", 3.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),  # obsolete RFC 850
        ("Wed Oct 21 07:28:10 2015", 10.0),  # obsolete asctime: no zone, read as GMT
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: go now
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ],
)
def test_parses(value: str | bytes, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "-5",
        "1e3",
        "12 seconds",
        "0x10",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "x" * 500,
    ],
)
def test_garbage_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_huge_seconds_do_not_overflow() -> None:
    assert parse_retry_after("9" * 400, now=NOW) == float("inf")


def outcome(exception: BaseException | None = None, result: Any = None) -> Outcome:
    return Outcome(attempt=1, exception=exception, result=result, wall_time=NOW)


def test_default_reads_a_rejection_retry_after() -> None:
    assert default_retry_after(outcome(RateLimited("slow down", retry_after=2.5))) == 2.5


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (SimpleNamespace(retry_after=4), 4.0),
        (SimpleNamespace(retry_after="Wed, 21 Oct 2015 07:28:05 GMT"), 5.0),
        (SimpleNamespace(retry_after=-1.0), None),
        (SimpleNamespace(retry_after=float("nan")), None),
        (SimpleNamespace(retry_after=True), None),
        (SimpleNamespace(retry_after=object()), None),
        (SimpleNamespace(), None),
    ],
)
def test_default_reads_a_result_attribute(source: object, expected: float | None) -> None:
    assert default_retry_after(outcome(result=source)) == expected


def test_default_reads_response_headers() -> None:
    response = httpx.Response(503, headers={"Retry-After": "7"})
    assert default_retry_after(outcome(result=response)) == 7.0
    dated = httpx.Response(503, headers={"retry-after": "Wed, 21 Oct 2015 07:28:02 GMT"})
    assert default_retry_after(outcome(result=dated)) == 2.0
    assert default_retry_after(outcome(result=httpx.Response(503))) is None
    assert default_retry_after(outcome(result={"Retry-After": "1"})) is None  # no .headers
    assert default_retry_after(outcome(result=SimpleNamespace(headers={"Retry-After": "3"}))) == 3


def test_default_reads_an_http_status_error_response() -> None:
    request = httpx.Request("GET", "http://example.test/")
    response = httpx.Response(429, headers={"Retry-After": "9"}, request=request)
    error = httpx.HTTPStatusError("429", request=request, response=response)
    assert default_retry_after(outcome(error)) == 9.0


def test_a_broken_headers_object_gives_no_hint() -> None:
    class Broken:
        def get(self, name: str) -> str:
            raise RuntimeError("boom")

    assert default_retry_after(outcome(result=SimpleNamespace(headers=Broken()))) is None
