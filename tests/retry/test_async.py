"""The async forms: decorator and ``acall``; sleeps and the deadline run on a ManualClock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sysdesign_kit.clock import SYSTEM_CLOCK, ManualClock
from sysdesign_kit.errors import CircuitOpen, ConfigurationError
from sysdesign_kit.retry import Attempt, Retry, current_attempt
from tests.retry.conftest import Recorder


def policy(clock: ManualClock, events: Recorder | None = None, **kw: Any) -> Retry:
    kw.setdefault("on", ConnectionError)
    kw.setdefault("jitter", "none")
    kw.setdefault("name", "dep")
    return Retry(clock=clock, listeners=[events] if events is not None else (), **kw)


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_retries_sleep_on_the_clock(clock: ManualClock, events: Recorder) -> None:
    calls: list[float] = []

    @policy(clock, events)
    async def work() -> str:
        calls.append(clock.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    task = asyncio.create_task(work())
    await settle()
    assert calls == [1000.0]
    assert clock.pending_sleepers == 1  # the 1 s backoff (the attempt never waited: no guard)
    clock.advance(1.0)
    await settle()
    assert calls == [1000.0, 1001.0]
    clock.advance(2.0)
    assert await task == "ok"
    assert calls == [1000.0, 1001.0, 1003.0]
    assert [(e.attempt, e.delay) for e in events.attempted] == [(1, 1.0), (2, 2.0)]


async def test_reraises_the_callers_own_exception(clock: ManualClock, events: Recorder) -> None:
    raised: list[ConnectionError] = []

    @policy(clock, events, attempts=2, wait_initial=0.0)
    async def work() -> None:
        await asyncio.sleep(0)  # suspends: runs under the deadline guard
        raised.append(ConnectionError(len(raised)))
        raise raised[-1]

    with pytest.raises(ConnectionError) as caught:
        await work()
    assert caught.value is raised[-1]
    assert len(raised) == 2
    assert [e.reason for e in events.gave_up] == ["attempts"]


async def test_first_attempt_is_cut_off_at_the_deadline(
    clock: ManualClock, events: Recorder
) -> None:
    stuck = asyncio.Event()

    @policy(clock, events, deadline=10.0)
    async def hang() -> None:
        await stuck.wait()

    task = asyncio.create_task(hang())
    await settle()
    assert clock.pending_sleepers == 1  # the guard, armed when the attempt first waited
    clock.advance(9.99)
    await settle()
    assert not task.done()
    clock.advance(0.01)
    with pytest.raises(TimeoutError) as caught:
        await task
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert [(e.reason, e.attempts) for e in events.gave_up] == [("deadline", 1)]
    assert events.attempted == []


async def test_a_retry_gets_only_the_time_that_remains(
    clock: ManualClock, events: Recorder
) -> None:
    stuck = asyncio.Event()
    remaining: list[float | None] = []

    @policy(clock, events, deadline=10.0)
    async def work() -> None:
        attempt = current_attempt()
        if attempt is None:
            await clock.sleep(4.0)
            raise ConnectionError("slow failure")
        remaining.append(attempt.remaining)
        await stuck.wait()

    task = asyncio.create_task(work())
    await settle()
    clock.advance(4.0)  # the first attempt fails at t=4
    await settle()
    clock.advance(1.0)  # the 1 s backoff; the retry starts at t=5
    await settle()
    assert remaining == [5.0]
    clock.advance(4.999)
    await settle()
    assert not task.done()
    clock.advance(0.001)
    with pytest.raises(TimeoutError):
        await task
    assert [e.reason for e in events.gave_up] == ["deadline"]


async def test_no_sleep_crosses_the_deadline(clock: ManualClock, events: Recorder) -> None:
    @policy(clock, events, deadline=2.5, attempts=10)
    async def down() -> None:
        raise ConnectionError("down")

    task = asyncio.create_task(down())
    await settle()
    clock.advance(1.0)  # slept 1 s; the next wait (2 s) would end at t=3 > 2.5
    with pytest.raises(ConnectionError):
        await task
    assert [e.reason for e in events.gave_up] == ["deadline"]
    assert len(events.attempted) == 1


async def test_the_deadline_on_the_system_clock() -> None:
    @Retry(on=ConnectionError, deadline=0.05)
    async def hang() -> None:
        await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await hang()
    assert time.monotonic() - started < 5.0  # cut off near 0.05 s, not after 30 s


async def test_an_outside_cancellation_is_not_a_timeout(clock: ManualClock) -> None:
    @policy(clock, deadline=10.0)
    async def hang() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert clock.pending_sleepers == 0  # the guard's watcher is gone too


async def test_a_swallowed_deadline_cancellation_returns_the_result(clock: ManualClock) -> None:
    @policy(clock, deadline=1.0)
    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "cleaned up"
        return "unreachable"

    task = asyncio.create_task(stubborn())
    await settle()
    clock.advance(1.0)
    assert await task == "cleaned up"  # like asyncio.timeout: nothing to convert
    assert task.cancelling() == 0  # the guard took its own cancellation back


@pytest.mark.parametrize("error", [asyncio.CancelledError(), KeyboardInterrupt()])
async def test_cancelled_and_interrupts_are_never_retried(
    clock: ManualClock, events: Recorder, error: BaseException
) -> None:
    calls = 0

    @policy(clock, events, on=lambda exc: True)
    async def work() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await work()
    assert calls == 1
    assert list(events) == []


async def test_circuit_open_is_never_retried(clock: ManualClock, events: Recorder) -> None:
    @policy(clock, events, on=Exception)
    async def guarded() -> None:
        raise CircuitOpen("inventory", state="half_open", retry_after=0.0)

    with pytest.raises(CircuitOpen):
        await guarded()
    assert [e.reason for e in events.gave_up] == ["breaker_open"]


async def test_result_predicate_and_acall(clock: ManualClock, events: Recorder) -> None:
    statuses = iter([503, 503, 503, 503])

    async def get(path: str) -> tuple[str, int]:
        await asyncio.sleep(0)
        return path, next(statuses)

    retried = policy(clock, events, on=(), on_result=lambda r: r[1] == 503, wait_initial=0.0)
    assert await retried.acall(get, "/x") == ("/x", 503)  # the final response
    assert len(events.attempted) == 3
    assert [e.reason for e in events.gave_up] == ["attempts"]


@pytest.mark.parametrize("deadline", [None, 30.0])
async def test_acall_retries(clock: ManualClock, deadline: float | None) -> None:
    calls = 0

    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0)
            raise ConnectionError
        return x * 2

    retried = policy(clock, deadline=deadline, wait_initial=0.0)
    assert await retried.acall(flaky, 21) == 42
    assert calls == 2


async def test_without_a_deadline(clock: ManualClock, events: Recorder) -> None:
    seen: list[Attempt | None] = []

    @policy(clock, events, deadline=None, wait_initial=0.0, on_result=lambda r: r is None)
    async def work() -> str | None:
        seen.append(current_attempt())
        return None if len(seen) < 3 else "done"

    assert await work() == "done"
    assert seen[0] is None
    assert [a.number for a in seen[1:] if a is not None] == [2, 3]
    assert all(a.remaining is None for a in seen[1:] if a is not None)


async def test_concurrent_calls_keep_their_own_attempts(clock: ManualClock) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    failures = {"a": 1, "b": 2}

    @policy(clock, wait_initial=0.0)
    async def work(name: str) -> str:
        attempt = current_attempt()
        seen[name].append(attempt.number if attempt else 1)
        await asyncio.sleep(0)
        if len(seen[name]) <= failures[name]:
            raise ConnectionError(name)
        return name

    assert await asyncio.gather(work("a"), work("b")) == ["a", "b"]
    assert seen == {"a": [1, 2], "b": [1, 2, 3]}


async def test_nested_async_retry_masks_the_outer_attempt(clock: ManualClock) -> None:
    inner_seen: list[Attempt | None] = []

    @policy(clock, name="inner")
    async def leaf() -> None:
        inner_seen.append(current_attempt())

    failed = False

    @policy(clock, name="outer", wait_initial=0.0)
    async def root() -> None:
        nonlocal failed
        await leaf()
        if not failed:
            failed = True
            raise ConnectionError

    await root()
    assert inner_seen == [None, None]  # first tries both times, never the outer's attempt 2


async def test_wrapped_coroutine_function_keeps_its_identity(clock: ManualClock) -> None:
    import inspect

    async def fetch(url: str) -> str:
        """Fetch."""
        return url

    wrapped = policy(clock)(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch."
    assert await wrapped("u") == "u"


def test_generators_are_refused() -> None:
    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    for fn in (gen, agen):
        with pytest.raises(ConfigurationError, match="generator"):
            Retry(on=ConnectionError)(fn)


async def test_system_clock_retry_without_waiting() -> None:
    calls = 0

    @Retry(on=ConnectionError, wait_initial=0.0, clock=SYSTEM_CLOCK)
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls < 3:
            raise ConnectionError
        return calls

    assert await flaky() == 3
