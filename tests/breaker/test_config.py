"""Bad configurations fail at construction with a message naming the value."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sysdesign_kit.breaker import CircuitBreaker, CountWindow, TimeWindow
from sysdesign_kit.errors import ConfigurationError

BAD: list[tuple[dict[str, Any], str]] = [
    ({"failure_rate": 0}, "failure_rate is a fraction of calls in \\(0, 1\\]"),
    ({"failure_rate": -0.5}, "failure_rate"),
    ({"failure_rate": 1.01}, "failure_rate"),
    ({"failure_rate": 50}, "did you mean 0.5"),
    ({"failure_rate": math.nan}, "failure_rate"),
    ({"failure_rate": "50%"}, "failure_rate must be a number"),
    ({"failure_rate": True}, "failure_rate must be a number"),
    ({"minimum_calls": 0}, "minimum_calls must be an int >= 1"),
    ({"minimum_calls": -3}, "minimum_calls"),
    ({"minimum_calls": 2.5}, "minimum_calls"),
    ({"minimum_calls": 101}, "minimum_calls \\(101\\) exceeds the window \\(last 100 calls\\)"),
    ({"open_for": 0}, "open_for must be > 0"),
    ({"open_for": -30}, "open_for"),
    ({"open_for": math.inf}, "open_for"),
    ({"open_for": "30s"}, "open_for must be a number of seconds"),
    ({"open_for_growth": 0.5}, "open_for_growth .* must be >= 1"),
    ({"open_for_growth": math.inf}, "open_for_growth"),
    ({"open_for_growth": None}, "open_for_growth must be a number"),
    ({"open_for_max": 10}, "open_for_max \\(10\\) must be >= open_for \\(30.0\\)"),
    ({"open_for_max": -1}, "open_for_max must be > 0"),
    ({"half_open_calls": 0}, "half_open_calls must be an int >= 1"),
    ({"half_open_calls": 1.5}, "half_open_calls"),
    ({"slow_call_threshold": 0}, "slow_call_threshold must be > 0"),
    ({"slow_call_threshold": -1.0}, "slow_call_threshold"),
    ({"slow_call_threshold": "1s"}, "slow_call_threshold must be seconds"),
    ({"slow_call_rate": 0.5}, "slow_call_rate needs slow_call_threshold"),
    ({"slow_call_threshold": 1.0, "slow_call_rate": 1.5}, "slow_call_rate"),
    ({"slow_call_threshold": 1.0, "slow_call_rate": 0}, "slow_call_rate"),
    ({"window": 100}, "window must be a CountWindow or a TimeWindow"),
    ({"failure_on": "Exception"}, "failure_on must be exception classes or a predicate"),
    ({"failure_on": (ValueError, int)}, "failure_on must be an exception class"),
    ({"ignore": int}, "ignore must be an exception class"),
    ({"ignore": lambda e: True}, "ignore must be an exception class"),
    ({"failure_if": 503}, "failure_if must be a predicate"),
]


@pytest.mark.parametrize(("settings", "message"), BAD)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CircuitBreaker("dep", **settings)


@pytest.mark.parametrize("name", ["", "x" * 201, None, 3])
def test_bad_names(name: object) -> None:
    with pytest.raises(ConfigurationError, match=r"name must be a str of 1\.\.200"):
        CircuitBreaker(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CountWindow(0), "CountWindow size must be an int in 1..1,000,000"),
        (lambda: CountWindow(-1), "CountWindow size"),
        (lambda: CountWindow(2_000_000), "CountWindow size"),
        (lambda: CountWindow(10.0), "CountWindow size"),  # type: ignore[arg-type]
        (lambda: TimeWindow(0), "TimeWindow seconds must be > 0"),
        (lambda: TimeWindow(-5), "TimeWindow seconds"),
        (lambda: TimeWindow(math.inf), "TimeWindow seconds"),
        (lambda: TimeWindow("60"), "TimeWindow seconds must be a number"),  # type: ignore[arg-type]
        (lambda: TimeWindow(60, buckets=0), "TimeWindow buckets must be an int >= 1"),
        (lambda: TimeWindow(60, buckets=2.5), "TimeWindow buckets"),  # type: ignore[arg-type]
        (lambda: TimeWindow(0.01, buckets=100), "narrower than 1 ms"),
    ],
)
def test_bad_windows(build: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_edges_that_are_fine() -> None:
    CircuitBreaker("x", failure_rate=1.0, minimum_calls=1, half_open_calls=1)
    CircuitBreaker("x", minimum_calls=100)
    CircuitBreaker("x", window=TimeWindow(1, buckets=1000), minimum_calls=10_000)
    CircuitBreaker("x", open_for=0.001, open_for_growth=1, open_for_max=0.001)
    CircuitBreaker("x", failure_on=(), slow_call_threshold=0.5, slow_call_rate=1.0)
    CircuitBreaker("x", failure_on=BaseException, ignore=(KeyError, LookupError))
    assert issubclass(ConfigurationError, ValueError)
