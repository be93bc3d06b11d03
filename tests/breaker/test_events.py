"""Events: every transition, every rejection, every finished call; none without listeners."""

from __future__ import annotations

import logging
import math

import pytest

from sysdesign_kit.breaker import CircuitBreaker
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen
from sysdesign_kit.events import (
    BreakerCallFinished,
    BreakerRejected,
    BreakerTransitioned,
    Event,
    subscribe,
)


class Down(Exception):
    pass


def down() -> None:
    raise Down


def test_a_whole_cycle_in_order(clock: ManualClock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        "payments",
        clock=clock,
        minimum_calls=2,
        half_open_calls=1,
        ignore=KeyError,
        listeners=[events.append],
    )
    breaker.call(lambda: None)
    with pytest.raises(Down):
        breaker.call(down)
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: None)
    clock.advance(30)
    with pytest.raises(Down):
        breaker.call(down)  # the trial fails
    clock.advance(30)
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["x"])  # an ignored trial gives its permit back
    breaker.call(lambda: None)
    c = "breaker:payments"
    assert events == [
        BreakerCallFinished(c, "payments", "success", 0.0),
        BreakerCallFinished(c, "payments", "failure", 0.0),
        BreakerTransitioned(c, "payments", "closed", "open"),
        BreakerRejected(c, "payments", 30.0),
        BreakerTransitioned(c, "payments", "open", "half_open"),
        BreakerCallFinished(c, "payments", "failure", 0.0),
        BreakerTransitioned(c, "payments", "half_open", "open"),
        BreakerTransitioned(c, "payments", "open", "half_open"),
        BreakerCallFinished(c, "payments", "ignored", 0.0),
        BreakerCallFinished(c, "payments", "success", 0.0),
        BreakerTransitioned(c, "payments", "half_open", "closed"),
    ]


def test_operators_and_half_open_rejections_publish(clock: ManualClock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        "dep", clock=clock, minimum_calls=1, half_open_calls=1, listeners=[events.append]
    )
    breaker.force_closed()  # closed -> closed: no transition
    breaker.force_open()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.reset()
    breaker.force_open()
    breaker.force_closed()
    assert events == [
        BreakerTransitioned("breaker:dep", "dep", "closed", "open"),
        BreakerRejected("breaker:dep", "dep", math.inf),
        BreakerTransitioned("breaker:dep", "dep", "open", "closed"),
        BreakerTransitioned("breaker:dep", "dep", "closed", "open"),
        BreakerTransitioned("breaker:dep", "dep", "open", "closed"),
    ]
    events.clear()
    breaker.reset()
    breaker.on_failure(breaker.acquire())  # one failure is enough with minimum_calls=1
    clock.advance(30)
    breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    assert events[-1] == BreakerRejected("breaker:dep", "dep", 0.0)


def test_call_durations_are_measured_when_someone_listens(clock: ManualClock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker("dep", clock=clock, listeners=[events.append])

    @breaker
    def work() -> None:
        clock.advance(0.25)

    work()
    assert events == [BreakerCallFinished("breaker:dep", "dep", "success", 0.25)]


async def test_process_wide_listeners_reach_existing_breakers(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock)

    @breaker
    async def work() -> int:
        return 1

    assert await work() == 1  # lean path, nobody listening
    events: list[Event] = []
    unsubscribe = subscribe(events.append)
    try:
        assert await work() == 1
    finally:
        unsubscribe()
    assert await work() == 1
    assert events == [BreakerCallFinished("breaker:dep", "dep", "success", 0.0)]


def test_a_failing_listener_never_breaks_the_call(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=1, listeners=[broken])
    with caplog.at_level(logging.ERROR, logger="sysdesign_kit.events"):
        assert breaker.call(lambda: 5) == 5
        with pytest.raises(Down):
            breaker.call(down)
        with pytest.raises(CircuitOpen):
            breaker.call(lambda: 5)
    assert len(caplog.records) == 4  # finished, finished, transitioned, rejected
