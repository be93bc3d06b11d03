"""Breakers of one name in two "processes" (each its own state object and connections) on a
real Redis, on one manual clock: what travels, when, and what never costs a round trip."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
import redis

from sysdesign_kit.breaker import BreakerRegistry, CircuitBreaker, CountWindow, State, TimeWindow
from sysdesign_kit.breaker.redis import RedisBreakerState
from sysdesign_kit.breaker.redis_shell import SharedCircuitBreaker
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen, ConfigurationError
from sysdesign_kit.events import BreakerTransitioned, Event
from tests.breaker.test_redis_support import (
    Boom,
    Maker,
    boom,
    counted,
    fail,
    ok,
    processes,
    settle,
    succeed,
    trip,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def make(
    redis_url: str, redis_prefix: str, clock: ManualClock, events: list[Event]
) -> Iterator[Maker]:
    yield from processes(redis_url, redis_prefix, clock, events)


def test_closed_calls_touch_redis_once_per_flush_interval(make: Maker, clock: ManualClock) -> None:
    state, breaker = make()
    ops = counted(state)
    succeed(breaker)  # the first call syncs at once (the calls before it count locally)
    settle(state)
    succeed(breaker, 100)
    fail(breaker, 2)
    clock.advance(0.999)
    succeed(breaker, 50)
    settle(state)
    assert ops == ["f"]
    clock.advance(0.001)
    succeed(breaker)  # the first call past the interval flushes
    settle(state)
    assert ops == ["f", "f"]
    shared = state.peek(breaker)
    assert (shared.state, shared.calls, shared.failures) == (State.CLOSED, 153, 2)


def test_all_processes_together_trip_the_shared_window(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = make(minimum_calls=10), make(minimum_calls=10)
    for state, breaker in ((sa, a), (sb, b)):
        succeed(breaker)
        settle(state)
    fail(a, 5)
    fail(b, 5)
    clock.advance(1.0)
    fail(a)  # flushes 6 failed calls: 6 in the shared window, below minimum_calls
    settle(sa)
    assert sa.peek(a).state is State.CLOSED
    fail(b)  # 12 calls, all failed
    settle(sb)
    assert b.state is State.OPEN
    assert a.state is State.CLOSED  # a process's own window (7 calls) never crossed
    assert b.stats().calls == 0
    succeed(a)  # a learns at its next flush...
    clock.advance(1.0)
    succeed(a)  # ...the first call after the interval
    settle(sa)
    assert a.state is State.OPEN
    with pytest.raises(CircuitOpen) as refused:
        a.call(ok)
    assert refused.value.retry_after == 29.0  # the shared open time, on the local clock


def test_a_local_trip_is_written_and_others_learn_it_within_the_flush_interval(
    make: Maker, clock: ManualClock, events: list[Event]
) -> None:
    (sa, a), (sb, b) = make(), make()
    for state, breaker in ((sa, a), (sb, b)):
        succeed(breaker)
        settle(state)
    fail(a, 3)  # 3 of 4 calls
    assert a.state is State.OPEN  # at once, locally
    settle(sa)
    shared = sa.peek(a)
    assert (shared.state, shared.trips, shared.remaining) == (State.OPEN, 1, 30.0)
    ops = counted(sb)
    clock.advance(0.5)
    succeed(b)  # stale, within the bound
    clock.advance(0.5)
    succeed(b)  # passes, and has the flush learn the trip
    settle(sb)
    assert b.state is State.OPEN
    for _ in range(20):  # refused locally, no round trip
        with pytest.raises(CircuitOpen):
            b.call(ok)
    settle(sb)
    assert ops == ["f"]
    clock.advance(1.0)
    with pytest.raises(CircuitOpen) as refused:
        b.call(ok)  # one refusal per interval has a worker check the shared state
    assert refused.value.retry_after == 28.0
    settle(sb)
    assert ops == ["f", "f"]
    opened = [e for e in events if isinstance(e, BreakerTransitioned)]
    assert [(e.previous, e.state) for e in opened] == [("closed", "open"), ("closed", "open")]


def test_a_trip_of_a_stale_period_cannot_overwrite_a_newer_state(
    make: Maker, clock: ManualClock
) -> None:
    (sa, a), (sb, b) = make(), make()
    for state, breaker in ((sa, a), (sb, b)):
        succeed(breaker)
        settle(state)
    before = sa.peek(a).epoch
    b.reset()  # a new shared period a has not heard of
    fail(a, 3)  # trips a's own window, in the period before the reset
    assert a.state is State.OPEN
    settle(sa)
    shared = sa.peek(a)
    assert (shared.state, shared.epoch) == (State.CLOSED, before + 1)
    assert a.state is State.CLOSED  # the newer shared state won
    succeed(a)


def test_exactly_half_open_calls_trials_across_processes(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = (make(open_for=10.0, open_for_growth=2.0) for _ in range(2))
    fail(a, 4)
    settle(sa)
    sb.sync(b)
    assert b.state is State.OPEN
    clock.advance(10.0)
    trials = [(a, a.acquire()), (b, b.acquire()), (a, a.acquire())]
    for breaker in (b, a, b):
        with pytest.raises(CircuitOpen) as refused:
            breaker.acquire()
        assert (refused.value.state, refused.value.retry_after) == ("half_open", 0.0)
    shared = sa.peek(a)
    assert (shared.state, shared.trials) == (State.HALF_OPEN, 3)
    assert a.stats().trials == b.stats().trials == 3
    breaker, first = trials[0]
    breaker.on_failure(first)  # any failed trial reopens, with the growth rule
    settle(sa)
    shared = sa.peek(a)
    assert (shared.state, shared.trips, shared.remaining) == (State.OPEN, 2, 20.0)
    assert a.state is State.OPEN
    for breaker, trial in trials[1:]:
        breaker.on_success(trial)  # late outcomes of the old half-open change nothing
    settle(sa, sb)
    assert sa.peek(a).state is State.OPEN
    assert b.state is State.OPEN

    clock.advance(20.0)
    trials = [(b, b.acquire()), (a, a.acquire()), (b, b.acquire())]
    for breaker, trial in trials:
        breaker.on_success(trial)
    settle(sa, sb)
    shared = sa.peek(a)
    assert (shared.state, shared.trips, shared.calls) == (State.CLOSED, 0, 0)
    # The process whose outcome came last heard it closed; the other asks at its next call.
    succeed(a)
    succeed(b)
    assert a.state is b.state is State.CLOSED


def test_a_process_without_a_trial_asks_once_per_interval(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = make(half_open_calls=1), make(half_open_calls=1)
    fail(a, 4)
    settle(sa)
    sb.sync(b)
    clock.advance(30.0)
    trial = a.acquire()
    ops = counted(sb)
    for _ in range(10):
        with pytest.raises(CircuitOpen):
            b.call(ok)
    assert ops == ["a"]
    assert b.state is State.HALF_OPEN
    a.on_success(trial)
    settle(sa)
    assert a.state is State.CLOSED
    clock.advance(1.0)
    succeed(b)  # asks again: admitted, closed
    assert ops == ["a", "a"]
    assert b.state is State.CLOSED


def test_trials_lost_with_their_process_are_handed_out_again_after_the_lease(
    make: Maker, clock: ManualClock
) -> None:
    options = {"trial_lease": 5.0}
    (sa, a), (sb, b) = make(state_options=options), make(state_options=options)
    fail(a, 4)
    settle(sa)
    sb.sync(b)
    clock.advance(30.0)
    lost = [a.acquire() for _ in range(3)]  # then a's process "dies"
    clock.advance(4.9)
    with pytest.raises(CircuitOpen):
        b.acquire()
    clock.advance(1.1)  # b's next ask comes after its recheck time and the lease
    trial = b.acquire()
    b.on_success(trial)
    settle(sb)
    assert sb.peek(b).passed == 1
    a.on_failure(lost[0])  # from the expired half-open period: ignored
    settle(sa)
    shared = sb.peek(b)
    assert (shared.state, shared.passed) == (State.HALF_OPEN, 1)


def test_a_trial_given_back_frees_its_permit_everywhere(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = make(half_open_calls=1, ignore=(KeyError,)), make(half_open_calls=1)
    fail(a, 4)
    settle(sa)
    sb.sync(b)
    clock.advance(30.0)
    a.release(a.acquire())
    settle(sa)
    assert sa.peek(a).trials == 0
    with pytest.raises(KeyError):
        a.call(lambda: {}["missing"])  # an ignored exception gives the trial back too
    settle(sa)
    assert sa.peek(a).trials == 0
    b.on_success(b.acquire())
    settle(sb)
    assert sb.peek(b).state is State.CLOSED


def test_operators_act_on_the_shared_state(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = make(), make()
    for state, breaker in ((sa, a), (sb, b)):
        succeed(breaker)
        settle(state)
    a.force_open()
    shared = sa.peek(a)
    assert (shared.state, shared.forced, shared.remaining) == (State.OPEN, True, math.inf)
    clock.advance(1.0)
    succeed(b)  # learns it with this call's flush
    settle(sb)
    with pytest.raises(CircuitOpen) as refused:
        b.call(ok)
    assert refused.value.retry_after == math.inf
    assert b.forced

    b.reset()
    assert b.state is State.CLOSED
    clock.advance(1.0)
    with pytest.raises(CircuitOpen):
        a.call(ok)  # forced open for ever locally, but this refusal checks...
    settle(sa)
    assert a.state is State.CLOSED  # ...and finds the reset
    succeed(a)

    b.force_closed()
    clock.advance(1.0)
    succeed(a)
    settle(sa)
    assert a.forced
    fail(a, 10)  # never trips, in any process
    clock.advance(1.0)
    fail(a)
    settle(sa)
    shared = sa.peek(a)
    assert (shared.state, shared.forced, shared.failures) == (State.CLOSED, True, 11)
    assert a.state is State.CLOSED


def test_keys_expire_unless_forced(make: Maker, redis_url: str, redis_prefix: str) -> None:
    state, breaker = make(state_options={"ttl": 120.0})
    succeed(breaker)
    settle(state)
    client = redis.Redis.from_url(redis_url)
    try:
        key = state.key("dep")
        assert key == f"{redis_prefix}:cb:{{dep}}".encode()
        assert 119_000 < client.pttl(key) <= 120_000
        trip(breaker)
        settle(state)
        assert 149_000 < client.pttl(key) <= 150_000  # open for 30 s, then the ttl
        breaker.force_open()
        assert client.pttl(key) == -1
    finally:
        client.close()


def test_the_shared_window_follows_the_breakers_time_window(make: Maker) -> None:
    state, breaker = make(window=TimeWindow(10, buckets=5))
    rules = state.rules(breaker.window, breaker.policy)
    assert (rules.width, rules.buckets) == (2.0, 5)
    other = RedisBreakerState(window=TimeWindow(30, buckets=3), prefix="x")
    try:
        rules = other.rules(CountWindow(50), breaker.policy)
        assert (rules.width, rules.buckets, rules.ttl) == (10.0, 3, 3600.0)
    finally:
        other.close()


def test_half_open_stats_show_the_shared_trials(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = make(), make()
    fail(a, 4)
    settle(sa)
    sb.sync(b)
    clock.advance(30.0)
    trial = a.acquire()
    b.acquire()
    a.on_success(trial)
    settle(sa)
    stats = sb.sync(b)
    assert stats is not None
    assert (b.stats().trials, b.stats().trials_passed) == (2, 1)


def test_registry_defaults_share_state(make: Maker, clock: ManualClock) -> None:
    state, _ = make()
    registry = BreakerRegistry(shared=state, clock=clock, minimum_calls=4)
    breaker = registry.get("payments")
    assert isinstance(breaker, SharedCircuitBreaker)
    assert breaker.shared is state
    assert registry.get("payments", minimum_calls=4) is breaker
    fail(breaker, 4)
    settle(state)
    assert state.peek(breaker).state is State.OPEN
    with pytest.raises(Boom):
        CircuitBreaker("plain").call(boom)


def test_bad_settings_are_named(make: Maker, redis_prefix: str) -> None:
    state, breaker = make()
    assert repr(state).startswith("RedisBreakerState('redis")
    assert repr(state).endswith(f"prefix='{redis_prefix}')")
    for options, word in (
        ({"flush_interval": 0}, "flush_interval"),
        ({"retry_interval": math.inf}, "retry_interval"),
        ({"trial_lease": -1}, "trial_lease"),
        ({"ttl": "1h"}, "ttl"),
        ({"window": CountWindow(10)}, "TimeWindow"),
        ({"workers": 0}, "workers"),
        ({"server_time": "no"}, "server_time"),
        ({"prefix": "has space"}, "prefix"),
    ):
        with pytest.raises(ConfigurationError, match=word):
            RedisBreakerState.from_url("redis://127.0.0.1:1", **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown option"):
        RedisBreakerState.from_url("redis://127.0.0.1:1", flush=1)
    with pytest.raises(ConfigurationError, match="RedisBreakerState"):
        CircuitBreaker("dep", shared="redis://localhost")  # type: ignore[arg-type]

    class Mine(CircuitBreaker):
        pass

    with pytest.raises(ConfigurationError, match="cannot share state"):
        Mine("dep", shared=state)
    with pytest.raises(ConfigurationError, match="does not share"):
        state.peek(CircuitBreaker("plain"))
    other, _ = make()
    with pytest.raises(ConfigurationError, match="does not share"):
        other.sync(breaker)


def test_an_ask_learns_of_a_reopening_and_waits_for_it(make: Maker, clock: ManualClock) -> None:
    state, breaker = make()
    fail(breaker, 4)
    settle(state)
    # Another process tripped it again meanwhile, later: the shared open time is later.
    client_state, other = make()
    clock.advance(30.0)
    client_state.sync(other)
    trial = other.acquire()
    other.on_failure(trial)  # reopened at 1030 for 30 s
    settle(client_state)
    clock.advance(0.0)
    ops = counted(state)
    with pytest.raises(CircuitOpen) as refused:
        breaker.call(ok)  # its own open time is up: it asks, and learns the new one
    assert refused.value.retry_after == 30.0
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            breaker.call(ok)  # no more asks until then
    assert ops == ["a"]


def test_an_ask_that_comes_early_waits_for_the_shared_open_time(
    redis_url: str, redis_prefix: str, clock: ManualClock
) -> None:
    shared_clock = ManualClock()  # Redis's clock
    state = RedisBreakerState.from_url(
        redis_url, prefix=redis_prefix, server_time=False, clock=shared_clock
    )
    try:
        breaker = CircuitBreaker("dep", shared=state, clock=clock, minimum_calls=4)
        fail(breaker, 4)
        settle(state)
        # Redis's answer took its time to come back: by Redis's clock less has passed.
        clock.advance(30.0)
        shared_clock.advance(29.5)
        ops = counted(state)
        with pytest.raises(CircuitOpen) as refused:
            breaker.call(ok)  # locally due; for Redis half a second remains
        assert refused.value.retry_after == 0.5
        for _ in range(5):
            with pytest.raises(CircuitOpen):
                breaker.call(ok)  # refused locally until then: no more asks
        assert ops == ["a"]
        assert breaker.retry_after == 0.5
        clock.advance(0.5)
        shared_clock.advance(0.5)
        breaker.on_success(breaker.acquire())
        assert ops == ["a", "a"]
    finally:
        state.close()


def test_slow_calls_travel_and_trip_the_shared_window(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = (
        make(minimum_calls=6, slow_call_threshold=1.0, slow_call_rate=0.5) for _ in range(2)
    )

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    for state, breaker in ((sa, a), (sb, b)):
        succeed(breaker)
        settle(state)
    for breaker in (a, b, a, b):
        assert breaker.call(slow) == "late"  # 2 s pass in each: each flushes its slow call
    settle(sa, sb)
    shared = sa.peek(a)
    assert (shared.state, shared.slow, shared.calls) == (State.CLOSED, 4, 4)
    assert b.call(slow) == "late"  # 5 slow calls: fewer than minimum_calls
    settle(sb)
    assert sb.peek(b).state is State.CLOSED
    assert a.call(slow) == "late"  # the 6th: every process's calls together trip it
    settle(sa)
    assert sa.peek(a).state is State.OPEN
    assert a.stats().state is State.OPEN  # though a's own window holds 4 calls


def test_a_trial_settles_once(make: Maker, clock: ManualClock) -> None:
    state, breaker = make(half_open_calls=2)
    fail(breaker, 4)
    settle(state)
    clock.advance(30.0)
    trial = breaker.acquire()
    breaker.on_success(trial)
    breaker.on_failure(trial)  # a second outcome of the same trial: ignored
    breaker.release(trial)
    settle(state)
    shared = state.peek(breaker)
    assert (shared.state, shared.trials, shared.passed) == (State.HALF_OPEN, 1, 1)


def test_an_older_answer_changes_nothing(make: Maker, clock: ManualClock) -> None:
    state, breaker = make()
    succeed(breaker)
    settle(state)
    old = state.peek(breaker)
    breaker.reset()
    period = breaker._period
    assert breaker._adopt(old._replace(state=State.OPEN, remaining=9.0), 0.0) is period
    assert breaker.state is State.CLOSED


def test_drain_says_when_work_is_still_running(make: Maker) -> None:
    state, _ = make()
    release = threading.Event()
    assert state.submit(lambda: release.wait(10))
    with pytest.raises(TimeoutError, match="still running"):
        state.drain(timeout=0.05)
    release.set()
    state.drain()


def test_a_failing_job_is_logged_not_raised(make: Maker, caplog: pytest.LogCaptureFixture) -> None:
    state, _ = make()

    def broken() -> None:
        raise RuntimeError("a bug")

    assert state.submit(broken)
    state.drain()
    assert "shared-state job failed" in caplog.text


def test_a_client_given_is_not_closed(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    state = RedisBreakerState(client=client, prefix=redis_prefix)
    breaker = CircuitBreaker("dep", shared=state)
    assert state.peek(breaker).state is State.CLOSED
    state.close()
    assert client.ping()
    client.close()
