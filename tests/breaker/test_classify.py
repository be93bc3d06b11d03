"""What counts as a failure: every classification path, through the breaker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from sysdesign_kit.breaker import NEVER_COUNTED, CircuitBreaker, State
from sysdesign_kit.breaker.classify import CANCELLED, FAILURE, IGNORED, SUCCESS, Classifier
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.events import BreakerCallFinished, Event


class Timeout(Exception):
    pass


class NotFound(Exception):
    pass


class Throttled(Timeout):
    pass


def raiser(error: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise error

    return raise_it


@pytest.mark.parametrize(
    ("settings", "error", "outcome"),
    [
        ({}, Timeout(), FAILURE),
        ({}, KeyError(), FAILURE),
        ({"failure_on": Timeout}, Timeout(), FAILURE),
        ({"failure_on": Timeout}, Throttled(), FAILURE),  # subclasses too
        ({"failure_on": Timeout}, NotFound(), SUCCESS),  # the dependency answered
        ({"failure_on": (Timeout, OSError)}, ConnectionError(), FAILURE),
        ({"failure_on": lambda e: "503" in str(e)}, Timeout("HTTP 503"), FAILURE),
        ({"failure_on": lambda e: "503" in str(e)}, Timeout("HTTP 404"), SUCCESS),
        ({"ignore": NotFound}, NotFound(), IGNORED),
        ({"ignore": (Throttled,), "failure_on": Timeout}, Throttled(), IGNORED),
        ({"ignore": Throttled}, Timeout(), FAILURE),
        ({}, asyncio.CancelledError(), CANCELLED),
        ({"failure_on": BaseException}, KeyboardInterrupt(), CANCELLED),
        ({"failure_on": BaseException}, SystemExit(1), CANCELLED),
        ({"failure_on": BaseException}, GeneratorExit(), CANCELLED),
        ({"ignore": KeyboardInterrupt}, KeyboardInterrupt(), CANCELLED),
    ],
)
def test_exception_classification(
    settings: dict[str, object], error: BaseException, outcome: int
) -> None:
    assert Classifier(**settings).exception(error) == outcome  # type: ignore[arg-type]


def test_never_counted_is_cancellation_and_interpreter_exit() -> None:
    assert set(NEVER_COUNTED) == {
        asyncio.CancelledError,
        KeyboardInterrupt,
        SystemExit,
        GeneratorExit,
    }


def outcomes_of(breaker_events: list[Event]) -> list[str]:
    return [e.outcome for e in breaker_events if isinstance(e, BreakerCallFinished)]


@pytest.mark.parametrize(
    ("error", "counted"),
    [
        (Timeout(), "failure"),
        (NotFound(), "ignored"),
        (ValueError(), "success"),
        (KeyboardInterrupt(), None),
        (SystemExit(0), None),
        (asyncio.CancelledError(), None),
    ],
)
def test_what_the_window_sees(
    clock: ManualClock, error: BaseException, counted: str | None
) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        "dep",
        clock=clock,
        minimum_calls=1,
        failure_on=Timeout,
        ignore=NotFound,
        listeners=[events.append],
    )
    with pytest.raises(type(error)):
        breaker.call(raiser(error))
    stats = breaker.stats()
    assert outcomes_of(events) == ([counted] if counted else [])
    expected_calls = 1 if counted in ("failure", "success") else 0
    if counted == "failure":
        assert breaker.state is State.OPEN
    else:
        assert (stats.calls, stats.failures) == (expected_calls, 0)


def test_failure_if_marks_results_as_failures(clock: ManualClock) -> None:
    breaker = CircuitBreaker(
        "dep", clock=clock, minimum_calls=2, failure_if=lambda status: status >= 500
    )
    assert breaker.call(lambda: 200) == 200
    assert breaker.call(lambda: 503) == 503  # the caller still gets the result
    assert breaker.state is State.OPEN


async def test_failure_if_applies_to_async_and_decorated_calls(clock: ManualClock) -> None:
    breaker = CircuitBreaker(
        "dep", clock=clock, minimum_calls=2, failure_if=lambda body: body is None
    )

    @breaker
    async def fetch(found: bool) -> str | None:
        return "body" if found else None

    assert await fetch(True) == "body"
    assert await fetch(False) is None
    assert breaker.state is State.OPEN


def test_slow_calls_count_against_the_slow_call_rate(clock: ManualClock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        "dep",
        clock=clock,
        minimum_calls=4,
        slow_call_threshold=2.0,
        slow_call_rate=0.75,
        listeners=[events.append],
    )

    @breaker
    def call(seconds: float) -> float:
        clock.advance(seconds)
        return seconds

    call(2.0)  # exactly the threshold is slow
    call(1.999)
    call(5.0)
    assert breaker.stats().slow_calls == 2
    call(3.0)  # 3 of 4 slow
    assert breaker.state is State.OPEN
    finished = [e for e in events if isinstance(e, BreakerCallFinished)]
    assert [e.slow for e in finished] == [True, False, True, True]
    assert [e.outcome for e in finished] == ["success"] * 4
    assert [e.duration for e in finished] == pytest.approx([2.0, 1.999, 5.0, 3.0])


def test_slow_call_rate_defaults_to_the_failure_rate(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=2, slow_call_threshold=1.0)
    assert breaker.policy.slow_call_rate == 0.5

    def slow() -> None:
        clock.advance(1.0)

    breaker.call(lambda: None)
    breaker.call(slow)
    assert breaker.state is State.OPEN


def test_a_slow_trial_reopens(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=1, slow_call_threshold=1.0)
    with pytest.raises(Timeout):
        breaker.call(raiser(Timeout()))
    clock.advance(30)

    def slow() -> str:
        clock.advance(1.0)
        return "late"

    assert breaker.call(slow) == "late"
    assert breaker.state is State.OPEN


def test_a_raising_predicate_counts_a_failure_and_is_logged(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: object) -> bool:
        raise RuntimeError("bug in the rule")

    breaker = CircuitBreaker(
        "dep", clock=clock, minimum_calls=2, failure_on=broken, failure_if=broken
    )
    with caplog.at_level(logging.ERROR, logger="sysdesign_kit.breaker"):
        assert breaker.call(lambda: 1) == 1
        with pytest.raises(Timeout):
            breaker.call(raiser(Timeout()))
    assert breaker.state is State.OPEN
    assert len([r for r in caplog.records if "predicate" in r.getMessage()]) == 2
