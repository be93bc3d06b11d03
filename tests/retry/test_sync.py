"""The blocking forms: decorator and ``call`` over a ManualClock (sleeps advance it)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen, RateLimited
from sysdesign_kit.retry import Attempt, Retry, RetryBudget, current_attempt, retry
from tests.retry.conftest import Recorder, script


def policy(clock: ManualClock, events: Recorder | None = None, **kw: Any) -> Retry:
    kw.setdefault("on", ConnectionError)
    kw.setdefault("jitter", "none")
    kw.setdefault("name", "dep")
    return Retry(clock=clock, listeners=[events] if events is not None else (), **kw)


def test_succeeds_after_failures_with_the_seed_schedule(
    clock: ManualClock, events: Recorder
) -> None:
    step = script([ConnectionError("a"), ConnectionError("b"), ConnectionError("c"), "ok"])
    slept: list[float] = []
    wrapped = policy(clock, events, sleep=slept.append)(step)
    assert wrapped() == "ok"
    assert slept == [1.0, 2.0, 4.0]  # 4 attempts: the first call and three retries
    assert [(e.attempt, e.delay, e.error) for e in events.attempted] == [
        (1, 1.0, "ConnectionError: a"),
        (2, 2.0, "ConnectionError: b"),
        (3, 4.0, "ConnectionError: c"),
    ]
    assert events.gave_up == []
    assert events[0].component == "retry:dep"


def test_reraises_the_callers_own_last_exception(clock: ManualClock, events: Recorder) -> None:
    last = ConnectionError("last")
    wrapped = policy(clock, events)(
        script([ConnectionError(), ConnectionError(), ConnectionError(), last])
    )
    with pytest.raises(ConnectionError) as caught:
        wrapped()
    assert caught.value is last
    assert caught.value.__context__ is None  # no earlier attempt chained onto it
    assert clock.monotonic() == 1007.0  # 1 + 2 + 4 s slept on the manual clock
    [gave_up] = events.gave_up
    assert (gave_up.reason, gave_up.attempts, gave_up.error) == (
        "attempts",
        4,
        "ConnectionError: last",
    )


def test_not_retryable_is_raised_at_once(clock: ManualClock, events: Recorder) -> None:
    error = ValueError("bad input")
    wrapped = policy(clock, events)(script([error]))
    with pytest.raises(ValueError) as caught:
        wrapped()
    assert caught.value is error
    assert [(e.reason, e.attempts) for e in events.gave_up] == [("not_retryable", 1)]
    assert events.attempted == []


def test_circuit_open_is_never_retried_even_under_on_exception(
    clock: ManualClock, events: Recorder
) -> None:
    rejection = CircuitOpen("payments", state="open", retry_after=5.0)
    wrapped = policy(clock, events, on=Exception)(script([rejection]))
    with pytest.raises(CircuitOpen) as caught:
        wrapped()
    assert caught.value is rejection
    assert [e.reason for e in events.gave_up] == ["breaker_open"]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_base_exceptions_pass_straight_through(
    clock: ManualClock, events: Recorder, error: BaseException
) -> None:
    wrapped = policy(clock, events, on=lambda exc: True)(script([error, "never"]))
    with pytest.raises(type(error)):
        wrapped()
    assert list(events) == []


def test_predicate_on(clock: ManualClock) -> None:
    wrapped = policy(clock, on=lambda exc: "retry" in str(exc))(
        script([OSError("please retry"), OSError("fatal")])
    )
    with pytest.raises(OSError, match="fatal"):
        wrapped()


def test_result_predicate_returns_the_last_result(clock: ManualClock, events: Recorder) -> None:
    wrapped = policy(clock, events, on=(), on_result=lambda r: r >= 500, attempts=3)(
        script([503, 502, 504])
    )
    assert wrapped() == 504  # the caller sees the final response
    assert [e.attempt for e in events.attempted] == [1, 2]
    [gave_up] = events.gave_up
    assert (gave_up.reason, gave_up.error) == ("attempts", "result 504")


def test_result_predicate_stops_on_a_good_result(clock: ManualClock) -> None:
    step = script([503, 200, 503])
    assert policy(clock, on_result=lambda r: r == 503).call(step) == 200


def test_server_delay_replaces_backoff_without_jitter(clock: ManualClock, events: Recorder) -> None:
    slept: list[float] = []
    wrapped = policy(clock, events, on=RateLimited, jitter="full", sleep=slept.append)(
        script([RateLimited("no", retry_after=7.25), "ok"])
    )
    assert wrapped() == "ok"
    assert slept == [7.25]
    assert events.attempted[0].delay == 7.25


def test_server_delay_is_capped(clock: ManualClock) -> None:
    slept: list[float] = []
    wrapped = policy(clock, on=RateLimited, retry_after_max=3.0, sleep=slept.append)(
        script(
            [RateLimited("no", retry_after=3600), RateLimited("no", retry_after=float("inf")), 1]
        )
    )
    assert wrapped() == 1
    assert slept == [3.0, 3.0]


def test_server_delay_from_a_result(clock: ManualClock) -> None:
    class Response:
        def __init__(self, status: int, retry_after: str | None = None) -> None:
            self.status = status
            self.headers = {"Retry-After": retry_after} if retry_after else {}

    slept: list[float] = []
    wrapped = policy(clock, on_result=lambda r: r.status == 503, sleep=slept.append)(
        script([Response(503, "2"), Response(503, "garbage"), Response(200)])
    )
    assert wrapped().status == 200
    assert slept == [2.0, 2.0]  # the second wait is the backoff's (no usable header)


def test_custom_and_disabled_retry_after(clock: ManualClock) -> None:
    slept: list[float] = []
    hook = policy(clock, on=RateLimited, retry_after=lambda o: 0.5, sleep=slept.append)
    hook.call(script([RateLimited("no", retry_after=9), 1]))
    ignored = policy(clock, on=RateLimited, retry_after=None, sleep=slept.append)
    ignored.call(script([RateLimited("no", retry_after=9), 1]))
    assert slept == [0.5, 1.0]


def test_deadline_stops_before_a_sleep_would_cross_it(clock: ManualClock, events: Recorder) -> None:
    slept: list[float] = []

    def slow() -> None:
        clock.advance(2.0)  # each attempt takes 2 s
        raise ConnectionError("down")

    wrapped = policy(
        clock,
        events,
        attempts=10,
        deadline=10.0,
        sleep=lambda s: (slept.append(s), clock.advance(s)),
    )(slow)
    with pytest.raises(ConnectionError):
        wrapped()
    # t=2 fail, sleep 1 -> t=5 fail, sleep 2 -> t=9 fail; sleeping 4 would reach t=13 > 10
    assert slept == [1.0, 2.0]
    assert clock.monotonic() == 1009.0
    assert [e.reason for e in events.gave_up] == ["deadline"]


def test_server_delay_past_the_deadline_gives_up(clock: ManualClock, events: Recorder) -> None:
    wrapped = policy(clock, events, on=RateLimited, deadline=5.0, retry_after_max=60.0)(
        script([RateLimited("no", retry_after=30.0), "never"])
    )
    with pytest.raises(RateLimited):
        wrapped()
    assert clock.monotonic() == 1000.0  # gave up rather than sleep past the deadline
    assert [e.reason for e in events.gave_up] == ["deadline"]


def test_sync_attempts_see_the_remaining_time(clock: ManualClock) -> None:
    seen: list[tuple[int, float, float | None, float]] = []

    def work() -> str:
        attempt = current_attempt()
        if attempt is None:
            clock.advance(3.0)
            raise ConnectionError("first")
        seen.append((attempt.number, attempt.delay, attempt.remaining, attempt.elapsed))
        if attempt.number < 3:
            raise ConnectionError("again")
        return "ok"

    assert policy(clock, deadline=60.0)(work)() == "ok"
    assert seen == [(2, 1.0, 56.0, 4.0), (3, 2.0, 54.0, 6.0)]
    assert current_attempt() is None  # nothing leaks out of the call


def test_no_deadline_no_remaining(clock: ManualClock) -> None:
    seen: list[Attempt | None] = []

    def work() -> None:
        seen.append(current_attempt())
        if len(seen) < 2:
            raise ConnectionError

    policy(clock, deadline=None).call(work)
    assert seen[0] is None
    assert seen[1] is not None
    assert seen[1].remaining is None


def test_nested_retry_does_not_see_the_outer_attempt(clock: ManualClock) -> None:
    inner_seen: list[Attempt | None] = []
    inner = policy(clock, name="inner")

    @inner
    def leaf() -> str:
        inner_seen.append(current_attempt())
        return "leaf"

    outer_calls = script([ConnectionError("outer"), None])

    @policy(clock, name="outer")
    def root() -> str:
        outer_calls()
        outer = current_attempt()
        result = leaf()
        assert current_attempt() is outer  # restored after the inner call
        return result

    assert root() == "leaf"
    assert inner_seen == [None]  # the inner call's first try, not the outer's attempt 2


def test_budget_refusal_gives_up(clock: ManualClock, events: Recorder) -> None:
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.1, ttl=10, clock=clock)  # 1 token
    wrapped = policy(clock, events, budget=budget, attempts=5)(
        script([ConnectionError("1"), ConnectionError("2"), "never"])
    )
    with pytest.raises(ConnectionError, match="2"):
        wrapped()
    assert [e.reason for e in events.gave_up] == ["budget"]
    assert len(events.attempted) == 1


def test_budget_storm_through_the_policy(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_second=1, ttl=10, clock=clock)
    calls = 0

    @policy(clock, budget=budget, attempts=4, wait_initial=0.0, wait_max=0.0, deadline=None)
    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("outage")

    for _ in range(500):
        with pytest.raises(ConnectionError):
            down()
    retries = calls - 500
    assert retries == 0.2 * 500 + 1 * 10  # ratio of first tries plus the floor, not 3 * 500


def test_decorator_keeps_metadata_and_methods_work(clock: ManualClock) -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @retry(on=ConnectionError, clock=clock)
        def get(self, path: str) -> str:
            """Fetch a path."""
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError
            return path

    client = Client()
    assert client.get("/x") == "/x"
    assert Client.get.__name__ == "get"
    assert Client.get.__doc__ == "Fetch a path."
    assert Client.get.__wrapped__  # type: ignore[attr-defined]


def test_default_event_name_is_the_function(clock: ManualClock, events: Recorder) -> None:
    wrapped = Retry(on=ConnectionError, clock=clock, listeners=[events])(
        script([ConnectionError(), 1])
    )
    wrapped()
    assert events[0].name.endswith("conftest.script.<locals>.step")  # type: ignore[attr-defined]


def test_call_passes_arguments(clock: ManualClock) -> None:
    def add(a: int, b: int = 0) -> int:
        return a + b

    assert policy(clock).call(add, 1, b=2) == 3


def test_default_sleep_on_a_manual_clock_advances_it(clock: ManualClock) -> None:
    policy(clock, attempts=2).call(script([ConnectionError(), None]))
    assert clock.monotonic() == 1001.0


def test_seeded_jitter_makes_the_waits_reproducible(clock: ManualClock) -> None:
    def run(seed: int) -> list[float]:
        slept: list[float] = []
        p = policy(clock, jitter="full", rng=random.Random(seed), sleep=slept.append)
        p.call(script([ConnectionError()] * 3 + [None]))
        return slept

    assert run(5) == run(5)
    reference = random.Random(5)
    assert run(5) == [c * reference.random() for c in (1.0, 2.0, 4.0)]


def test_a_listener_that_raises_does_not_break_the_call(clock: ManualClock) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("sink down")

    assert (
        Retry(on=ConnectionError, clock=clock, listeners=[broken]).call(
            script([ConnectionError(), 5])
        )
        == 5
    )
