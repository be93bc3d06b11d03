"""CircuitBreaker on a ManualClock: exact transitions, rejections, operators, introspection."""

from __future__ import annotations

import math

import pytest

from sysdesign_kit.breaker import CircuitBreaker, CountWindow, State, TimeWindow
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen, Rejected


class Boom(Exception):
    pass


def ok() -> str:
    return "ok"


def boom() -> str:
    raise Boom("down")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(boom)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(ok) == "ok"


def tripped(clock: ManualClock, **settings: object) -> CircuitBreaker:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=4, **settings)  # type: ignore[arg-type]
    fail(breaker, 4)
    assert breaker.state is State.OPEN
    return breaker


def test_opens_at_exactly_the_threshold_once_minimum_calls_are_in(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=10)
    fail(breaker, 5)  # 5 of 5 failed, but fewer than 10 calls: the rate does not count yet
    succeed(breaker, 4)  # a success never trips
    assert breaker.state is State.CLOSED
    assert breaker.stats().failure_rate == 5 / 9
    succeed(breaker)  # 10 calls, 50%: still only a failure trips
    assert breaker.state is State.CLOSED
    fail(breaker)  # 6 of 11 >= 50%
    assert breaker.state is State.OPEN


def test_just_under_the_threshold_stays_closed(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=10, window=CountWindow(10))
    succeed(breaker, 6)
    fail(breaker, 4)  # 40%
    assert breaker.state is State.CLOSED
    fail(breaker)  # the window slides: 5 of the last 10
    assert breaker.state is State.OPEN


def test_stays_open_exactly_open_for_then_admits_trials(clock: ManualClock) -> None:
    breaker = tripped(clock)
    clock.advance(29.999)
    with pytest.raises(CircuitOpen) as caught:
        breaker.call(ok)
    assert caught.value.retry_after == pytest.approx(0.001)
    assert caught.value.state == "open"
    assert breaker.retry_after == pytest.approx(0.001)
    clock.advance(0.001)
    assert breaker.state is State.OPEN  # no timer: the next call turns it half-open
    assert breaker.retry_after == 0.0
    permits = [breaker.acquire() for _ in range(3)]
    assert breaker.state is State.HALF_OPEN
    with pytest.raises(CircuitOpen) as caught:
        breaker.acquire()
    assert (caught.value.state, caught.value.retry_after) == ("half_open", 0.0)
    for permit in permits[:2]:
        breaker.on_success(permit)
        assert breaker.state is State.HALF_OPEN
    breaker.on_success(permits[2])
    assert breaker.state is State.CLOSED
    assert breaker.stats().calls == 0  # a fresh window


def test_any_trial_failure_reopens(clock: ManualClock) -> None:
    breaker = tripped(clock)
    clock.advance(30)
    first, second = breaker.acquire(), breaker.acquire()
    breaker.on_success(first)
    breaker.on_failure(second)
    assert breaker.state is State.OPEN
    assert breaker.retry_after == 30.0
    assert breaker.stats().trips == 2


def test_open_time_grows_on_repeated_trips_up_to_the_cap(clock: ManualClock) -> None:
    breaker = tripped(clock, open_for_growth=2.0, open_for_max=100.0, half_open_calls=1)
    seen = []
    for _ in range(4):
        seen.append(breaker.retry_after)
        clock.advance(breaker.retry_after)
        fail(breaker)  # the trial fails
    assert seen == [30.0, 60.0, 100.0, 100.0]
    clock.advance(100.0)
    succeed(breaker)  # the trial passes: growth starts over
    fail(breaker, 4)
    assert breaker.retry_after == 30.0


def test_time_window_forgets_old_failures(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, window=TimeWindow(10, buckets=10), minimum_calls=4)
    fail(breaker, 3)
    clock.advance(10.0)  # those failures' bucket leaves the window
    succeed(breaker, 3)
    fail(breaker)  # 1 of 4
    assert breaker.state is State.CLOSED
    fail(breaker)  # 2 of 5 < 50%
    assert breaker.state is State.CLOSED
    clock.advance(9.0)
    fail(breaker)  # 3 of 6 = 50%
    assert breaker.state is State.OPEN


def test_a_call_that_started_before_a_transition_cannot_move_the_breaker(
    clock: ManualClock,
) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=4)
    slow_one = breaker.acquire()  # admitted while CLOSED
    fail(breaker, 4)
    clock.advance(30)
    trials = [breaker.acquire() for _ in range(3)]
    breaker.on_failure(slow_one)  # finishes now: belongs to the first CLOSED period
    assert breaker.state is State.HALF_OPEN
    for trial in trials:
        breaker.on_success(trial)
    assert breaker.state is State.CLOSED
    breaker.on_failure(trials[0])  # settled twice: ignored
    assert breaker.state is State.CLOSED


def test_released_trial_is_handed_out_again(clock: ManualClock) -> None:
    breaker = tripped(clock, half_open_calls=1)
    clock.advance(30)
    trial = breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.release(trial)
    breaker.release(trial)  # once only
    again = breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.on_success(again)
    assert breaker.state is State.CLOSED


def test_every_rejection_is_a_fresh_circuit_open_equal_to_the_constructed_one(
    clock: ManualClock,
) -> None:
    breaker = tripped(clock)
    clock.advance(12.3456)
    errors = []
    for _ in range(3):
        with pytest.raises(CircuitOpen) as caught:
            breaker.call(ok)
        errors.append(caught.value)
    assert len({id(error) for error in errors}) == 3
    assert all(error.__traceback__ is not None for error in errors)
    built = CircuitOpen("dep", state="open", retry_after=errors[0].retry_after)
    for ours in (errors[0], breaker._rejection(State.HALF_OPEN, 0.0)):
        reference = CircuitOpen("dep", state=ours.state, retry_after=ours.retry_after)
        assert type(ours) is CircuitOpen
        assert isinstance(ours, Rejected)
        assert ours.args == reference.args
        assert vars(ours) == vars(reference)
        assert str(ours) == str(reference)
        assert repr(ours) == repr(reference)
    assert str(errors[0]) == "circuit breaker 'dep' is open; retry after 17.654s"
    assert vars(built) == vars(errors[0])


def test_force_open_closed_and_reset(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=4)
    breaker.force_open()
    assert (breaker.state, breaker.forced) == (State.OPEN, True)
    clock.advance(1e9)
    with pytest.raises(CircuitOpen) as caught:
        breaker.call(ok)
    assert caught.value.retry_after == math.inf
    assert breaker.retry_after == math.inf
    breaker.force_closed()
    assert (breaker.state, breaker.forced) == (State.CLOSED, True)
    fail(breaker, 20)
    assert breaker.state is State.CLOSED  # never trips
    assert breaker.stats().failures == 20  # but operators still see the rate
    breaker.reset()
    assert (breaker.state, breaker.forced) == (State.CLOSED, False)
    assert breaker.stats().calls == 0
    fail(breaker, 4)
    assert breaker.state is State.OPEN
    breaker.reset()
    succeed(breaker)


def test_stats_for_operators(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=4, slow_call_threshold=1.0)
    succeed(breaker, 2)

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    assert breaker.call(slow) == "late"
    fail(breaker)
    stats = breaker.stats()
    assert (stats.name, stats.state, stats.forced) == ("dep", State.CLOSED, False)
    assert (stats.calls, stats.failures, stats.slow_calls) == (4, 1, 1)
    assert (stats.failure_rate, stats.slow_call_rate) == (0.25, 0.25)
    assert stats.retry_after == 0.0
    fail(breaker)  # 2 of 5 failed... 40%: closed
    fail(breaker)  # 3 of 6: open
    stats = breaker.stats()
    assert (stats.state, stats.calls, stats.retry_after, stats.trips) == (State.OPEN, 0, 30.0, 1)
    assert stats.since == clock.monotonic()
    clock.advance(30)
    permit = breaker.acquire()
    breaker.on_success(breaker.acquire())
    stats = breaker.stats()
    assert (stats.state, stats.trials, stats.trials_passed) == (State.HALF_OPEN, 2, 1)
    breaker.release(permit)
    assert breaker.stats().trials == 1
    assert breaker.failure_rate == 0.0
    assert repr(breaker) == "<CircuitBreaker 'dep' half_open>"
    breaker.force_open()
    assert repr(breaker) == "<CircuitBreaker 'dep' open, forced>"


def test_the_seed_defaults(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock)
    assert breaker.window == CountWindow(100)
    policy = breaker.policy
    assert (policy.failure_rate, policy.minimum_calls, policy.open_for) == (0.5, 20, 30.0)
    assert (policy.half_open_calls, policy.open_for_growth, policy.open_for_max) == (3, 1.0, None)
    assert breaker.slow_call_threshold is None
    succeed(breaker, 10)
    fail(breaker, 9)
    assert breaker.state is State.CLOSED  # 19 calls
    fail(breaker)  # 10 of 20
    assert breaker.state is State.OPEN


def test_a_transition_interrupted_midway_leaves_the_breaker_usable(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=1)
    original = CircuitBreaker._make_period
    calls = {"n": 0}

    def interrupted(self: CircuitBreaker, status: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # arrives between taking the claim and storing
        return original(self, status)  # type: ignore[arg-type]

    monkeypatch.setattr(CircuitBreaker, "_make_period", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fail(breaker)
    assert breaker.state is State.CLOSED
    fail(breaker)  # the claim was given back: the next failure trips it
    assert breaker.state is State.OPEN
    breaker.reset()  # and operators are not stuck waiting for a claim
    assert breaker.state is State.CLOSED


def test_a_rejection_pickles_and_prints(clock: ManualClock) -> None:
    import pickle

    breaker = tripped(clock)
    with pytest.raises(CircuitOpen) as caught:
        breaker.call(ok)
    copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes
    assert (type(copy), vars(copy), str(copy)) == (
        CircuitOpen, vars(caught.value), str(caught.value)
    )  # fmt: skip
    assert str(CircuitOpen("x", state="half_open")) == (
        "circuit breaker 'x' is half-open; retry after 0.000s"
    )
