"""Bad configurations fail at construction with a message naming the value; the exports."""

from __future__ import annotations

import random
from typing import Any

import pytest

import sysdesign_kit.retry
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.retry import Retry, RetryBudget


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "attempts must be >= 1, got 0: it counts calls, the first one included"),
        ({"attempts": -3}, "attempts must be >= 1"),
        ({"attempts": 2.0}, "attempts must be an int"),
        ({"attempts": True}, "attempts must be an int"),
        ({"wait_initial": -1}, "wait_initial must be >= 0 seconds"),
        ({"wait_max": -1}, "wait_max must be >= 0 seconds"),
        ({"wait_multiplier": 0.9}, "wait_multiplier must be finite and >= 1"),
        ({"jitter": "fuzzy"}, "jitter='fuzzy' is not one of"),
        ({"deadline": 0}, "deadline must be > 0 seconds"),
        ({"deadline": -5}, "deadline must be > 0 seconds"),
        ({"deadline": float("inf")}, "deadline must be finite"),
        ({"retry_after_max": -1}, "retry_after_max must be >= 0 seconds"),
        ({"retry_after": "Retry-After"}, "retry_after must be a callable or None"),
        ({"on_result": 503}, "on_result must be a callable"),
        ({"budget": 0.2}, "budget must be a RetryBudget"),
        ({"name": ""}, "name must be 1..200 characters"),
        ({"name": "x" * 201}, "name must be 1..200 characters"),
        ({"clock": object()}, "clock must be a Clock"),
        ({"sleep": 1.0}, "sleep must be a callable"),
        ({"rng": 42}, "rng must be a random.Random"),
        ({"on": ()}, r"on=\(\) retries nothing"),
        ({"on": ("ConnectionError",)}, "on= must hold exception classes"),
        ({"on": int}, "on= must hold exception classes"),
        ({"on": BaseException}, "on=BaseException is not an Exception subclass"),
        ({"on": (ConnectionError, KeyboardInterrupt)}, "on=KeyboardInterrupt is not an Exception"),
        ({"on": 42}, "on= must be an exception class, a tuple of them or a predicate"),
    ],
)
def test_bad_configs(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("on", ConnectionError)
    with pytest.raises(ConfigurationError, match=message):
        Retry(**kwargs)


def test_on_is_required() -> None:
    with pytest.raises(TypeError, match="on"):
        Retry()  # type: ignore[call-arg]


def test_empty_on_is_fine_with_a_result_predicate() -> None:
    assert Retry(on=(), on_result=lambda r: False).on == ()


def test_defaults() -> None:
    policy = Retry(on=OSError)
    assert policy.attempts == 4
    assert policy.deadline == 60.0
    assert policy.backoff.jitter == "full"
    assert [policy.backoff.ceiling(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert policy.budget is None
    assert policy.retry_after_max == 30.0
    assert "attempts=4" in repr(policy)
    assert "jitter='full'" in repr(policy)


def test_replace_keeps_everything_else(clock: ManualClock) -> None:
    base = Retry(on=OSError, attempts=5, clock=clock, name="api", rng=random.Random(1))
    budget = RetryBudget(clock=clock)
    per_host = base.replace(budget=budget, name="api:host-a")
    assert (per_host.attempts, per_host.clock, per_host.rng) == (5, clock, base.rng)
    assert per_host.budget is budget
    assert per_host.name == "api:host-a"
    assert base.budget is None
    with pytest.raises(ConfigurationError):
        base.replace(attempts=0)
    with pytest.raises(TypeError):
        base.replace(retries=3)
    assert sysdesign_kit.retry.testing.__all__ == ["instant", "is_testing", "set_testing"]
