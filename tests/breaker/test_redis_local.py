"""When Redis cannot be reached, a shared breaker works on its own state exactly as the
in-memory one does, reports it once per burst, tries again after ``retry_interval``, and
reconciles with the shared state when Redis answers again.

"Down" is a loopback port nobody listens on (connections are refused for real); "back" points
the same state object at the real server.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from sysdesign_kit.backends.redis import Connections, Script, parse_redis_url, sync_client
from sysdesign_kit.breaker import CircuitBreaker, State
from sysdesign_kit.breaker.redis import RedisBreakerState
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import BackendUnavailable, CircuitOpen
from sysdesign_kit.events import BackendFailure, BreakerTransitioned, Event
from tests.breaker.test_redis_support import counted, fail, ok, settle, succeed, trip

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def down(clock: ManualClock, redis_prefix: str) -> Iterator[RedisBreakerState]:
    state = RedisBreakerState.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        prefix=redis_prefix,
        server_time=False,
        clock=clock,
        retry_interval=5.0,
    )
    yield state
    state.close()


def point(state: RedisBreakerState, url: str) -> None:
    """Send the state's calls to ``url`` from now on (same timeouts and retry policy)."""
    state.connections.close()
    state.client.close()
    state.client = sync_client(parse_redis_url(url))
    state.connections = Connections(state.client)


def back(state: RedisBreakerState, url: str) -> None:
    """Redis is reachable again (the same state object, now on the real server)."""
    point(state, url)


def gone(state: RedisBreakerState) -> None:
    """Redis is unreachable again: connections are refused."""
    point(state, f"redis://127.0.0.1:{free_port()}/0")


def failures(events: list[Event]) -> list[tuple[str, str, str, str]]:
    return [
        (e.component, e.backend, e.operation, e.outcome)
        for e in events
        if isinstance(e, BackendFailure)
    ]


def test_works_locally_reports_once_and_retries_after_the_interval(
    down: RedisBreakerState, clock: ManualClock
) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        "dep",
        shared=down,
        clock=clock,
        minimum_calls=4,
        half_open_calls=2,
        listeners=[events.append],
    )
    ops = counted(down)
    succeed(breaker)  # the first flush fails in the background
    settle(down)
    assert failures(events) == [("breaker:dep", "redis", "flush", "local")]
    assert "ConnectionError" in next(e for e in events if isinstance(e, BackendFailure)).error
    for _ in range(3):
        clock.advance(1.0)
        succeed(breaker, 10)  # flushes are due, but Redis is left alone until 5 s passed
    trip(breaker)
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpen) as refused:
        breaker.call(ok)
    assert refused.value.retry_after == 30.0
    settle(down)
    assert ops == ["f"]
    clock.advance(2.0)
    with pytest.raises(CircuitOpen):
        breaker.call(ok)  # 5 s since the failure: this refusal has a worker try again
    settle(down)
    assert ops == ["f", "f"]
    assert len(failures(events)) == 1  # the same burst

    clock.advance(30.0)  # a local half-open, with local trials
    trials = [breaker.acquire(), breaker.acquire()]
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    for trial in trials:
        breaker.on_success(trial)
    assert breaker.state is State.CLOSED
    moves = [(e.previous, e.state) for e in events if isinstance(e, BreakerTransitioned)]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert len(failures(events)) == 1


def test_operators_apply_locally_and_say_the_shared_state_was_not_written(
    down: RedisBreakerState, clock: ManualClock
) -> None:
    breaker = CircuitBreaker("dep", shared=down, clock=clock)
    with pytest.raises(BackendUnavailable, match="force_open applied in this process only") as err:
        breaker.force_open()
    assert isinstance(err.value.__cause__, BackendUnavailable)
    assert breaker.state is State.OPEN
    assert breaker.forced
    with pytest.raises(BackendUnavailable):
        breaker.reset()
    assert breaker.state is State.CLOSED
    with pytest.raises(BackendUnavailable):
        down.peek(breaker)
    assert down.sync(breaker) is None


def test_comes_back_and_writes_a_trip_made_while_apart(
    down: RedisBreakerState, clock: ManualClock, redis_url: str, redis_prefix: str
) -> None:
    events: list[Event] = []
    other = RedisBreakerState.from_url(
        redis_url, prefix=redis_prefix, server_time=False, clock=clock
    )
    try:
        seen = CircuitBreaker("dep", shared=other, clock=clock, minimum_calls=4)
        succeed(seen)
        settle(other)
        breaker = CircuitBreaker(
            "dep", shared=down, clock=clock, minimum_calls=4, listeners=[events.append]
        )
        back(down, redis_url)
        succeed(breaker)  # first contact: tied to the shared period
        settle(down)
        assert down.peek(breaker).state is State.CLOSED
        gone(down)
        clock.advance(1.0)
        trip(breaker)  # the flush and the trip's write fail: a local trip
        settle(down)
        (reported,) = failures(events)  # one burst, whichever operation met it first
        assert reported[:2] == ("breaker:dep", "redis")
        assert reported[2:] in (("flush", "local"), ("trip", "local"))
        assert other.peek(seen).state is State.CLOSED
        back(down, redis_url)
        clock.advance(5.0)
        with pytest.raises(CircuitOpen):
            breaker.call(ok)  # the refusal's check reaches Redis: the trip is written
        settle(down)
        shared = other.peek(seen)
        assert (shared.state, shared.trips) == (State.OPEN, 1)
        assert breaker.state is State.OPEN
        other.sync(seen)
        assert seen.state is State.OPEN
        # A new burst is reported again.
        gone(down)
        clock.advance(25.0)
        with pytest.raises(CircuitOpen):
            breaker.call(ok)
        settle(down)
        assert len(failures(events)) == 2
    finally:
        other.close()


def test_a_trial_whose_outcome_cannot_be_written_finishes_the_half_open_locally(
    clock: ManualClock, redis_url: str, redis_prefix: str
) -> None:
    state = RedisBreakerState.from_url(
        redis_url, prefix=redis_prefix, server_time=False, clock=clock
    )
    try:
        breaker = CircuitBreaker("dep", shared=state, clock=clock, minimum_calls=4)
        fail(breaker, 4)
        settle(state)
        clock.advance(30.0)
        first, second = breaker.acquire(), breaker.acquire()
        gone(state)
        breaker.on_success(first)  # cannot be written: a local half-open, this trial passed
        settle(state)
        assert breaker.state is State.HALF_OPEN
        assert breaker.stats().trials_passed == 1
        breaker.on_success(second)  # a trial of the shared period: nothing more to do
        extra = [breaker.acquire(), breaker.acquire()]  # the local phase's other trials
        for trial in extra:
            breaker.on_success(trial)
        assert breaker.state is State.CLOSED
    finally:
        state.close()


def test_an_answer_that_is_not_ours_is_a_backend_failure(
    clock: ManualClock, redis_url: str, redis_prefix: str
) -> None:
    events: list[Event] = []
    state = RedisBreakerState.from_url(
        redis_url, prefix=redis_prefix, server_time=False, clock=clock
    )
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(state.key("dep"), "not a hash")
        breaker = CircuitBreaker("dep", shared=state, clock=clock, listeners=[events.append])
        succeed(breaker)
        settle(state)
        error = next(e for e in events if isinstance(e, BackendFailure)).error
        assert "WRONGTYPE" in error
        assert error.startswith("ResponseError")
        succeed(breaker, 5)
    finally:
        client.close()
        state.close()


def test_a_closed_state_leaves_breakers_local_and_quiet(
    clock: ManualClock, redis_url: str, redis_prefix: str
) -> None:
    events: list[Event] = []
    state = RedisBreakerState.from_url(redis_url, prefix=redis_prefix, clock=clock)
    breaker = CircuitBreaker(
        "dep", shared=state, clock=clock, minimum_calls=4, listeners=[events.append]
    )
    state.close()
    succeed(breaker)
    trip(breaker)
    assert breaker.state is State.OPEN
    clock.advance(30.0)
    breaker.on_success(breaker.acquire())
    assert not failures(events)


def test_a_shared_half_open_losing_redis_runs_one_of_its_own(
    clock: ManualClock, redis_url: str, redis_prefix: str
) -> None:
    def make() -> tuple[RedisBreakerState, CircuitBreaker]:
        state = RedisBreakerState.from_url(
            redis_url, prefix=redis_prefix, server_time=False, clock=clock
        )
        return state, CircuitBreaker("dep", shared=state, clock=clock, half_open_calls=1)

    (sa, a), (sb, b) = make(), make()
    try:
        fail(a, 20)
        settle(sa)
        sb.sync(b)
        clock.advance(30.0)
        held = a.acquire()  # the one shared trial
        with pytest.raises(CircuitOpen):
            b.acquire()
        assert b.state is State.HALF_OPEN
        gone(sb)
        sb.failed(BackendUnavailable("gone"))  # b's process learnt it is down
        b.on_success(b.acquire())  # a half-open phase of b's own, with its own trial
        assert b.state is State.CLOSED
        gone(sa)
        sa.failed(BackendUnavailable("gone"))
        a.on_success(held)  # its outcome cannot be written: finished locally
        a.release(held)  # (and a second settle is ignored)
        settle(sa, sb)
        assert a.state is State.CLOSED
    finally:
        sa.close()
        sb.close()


def test_a_reply_that_is_not_the_scripts_is_a_backend_failure(
    down: RedisBreakerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not something a real server sends: the script always answers its status line.
    monkeypatch.setattr(Script, "run", lambda *args: b"OK")
    with pytest.raises(BackendUnavailable, match="answered b'OK'") as err:
        down.call(down.key("dep"), "f", None, (0, 0, 0), ())
    assert isinstance(err.value.__cause__, ValueError)
