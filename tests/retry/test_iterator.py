"""The iterator forms: ``for attempt in policy`` and ``async for attempt in policy``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.retry import Attempt, Retry, RetryBudget
from tests.retry.conftest import Recorder, script


def policy(clock: ManualClock, events: Recorder | None = None, **kw: Any) -> Retry:
    kw.setdefault("on", ConnectionError)
    kw.setdefault("jitter", "none")
    return Retry(clock=clock, listeners=[events] if events is not None else (), **kw)


def test_sync_iteration_retries_and_stops_on_success(clock: ManualClock, events: Recorder) -> None:
    step = script([ConnectionError("a"), ConnectionError("b"), "ok"])
    seen: list[tuple[int, float, float | None, float]] = []
    for attempt in policy(clock, events):
        with attempt:
            seen.append((attempt.number, attempt.delay, attempt.remaining, attempt.elapsed))
            value = step()
    assert value == "ok"
    assert seen == [(1, 0.0, 60.0, 0.0), (2, 1.0, 59.0, 1.0), (3, 2.0, 57.0, 3.0)]
    assert [e.name for e in events] == ["retry", "retry"]  # no function to name it after


def test_sync_iteration_reraises_the_own_exception(clock: ManualClock, events: Recorder) -> None:
    last = ConnectionError("last")
    step = script([ConnectionError(), last])

    def run() -> None:
        for attempt in policy(clock, events, attempts=2):
            with attempt:
                step()

    with pytest.raises(ConnectionError) as caught:
        run()
    assert caught.value is last
    assert [e.reason for e in events.gave_up] == ["attempts"]


def test_sync_iteration_not_retryable(clock: ManualClock) -> None:
    def run() -> None:
        for attempt in policy(clock):
            with attempt:
                raise KeyError("x")

    with pytest.raises(KeyError):
        run()


def test_sync_iteration_result_predicate_keeps_the_last_result(clock: ManualClock) -> None:
    statuses = iter([503, 502, 504, 200])
    numbers = []
    for attempt in policy(clock, on=(), on_result=lambda s: s >= 500, attempts=3):
        with attempt:
            status = next(statuses)
            attempt.result = status
        numbers.append(attempt.number)
    assert status == 504
    assert numbers == [1, 2, 3]


def test_an_attempt_not_used_as_context_ends_iteration(clock: ManualClock) -> None:
    attempts = list(policy(clock))
    assert [a.number for a in attempts] == [1]


def test_attempt_result_without_value_raises(clock: ManualClock) -> None:
    attempt = next(iter(policy(clock)))
    with pytest.raises(AttributeError, match="no result"):
        _ = attempt.result
    assert repr(attempt) == "Attempt(number=1, delay=0.000)"


def test_a_decorator_attempt_is_not_a_context_manager(clock: ManualClock) -> None:
    attempt = Attempt(2, 1.0, clock=clock, start=clock.monotonic(), deadline_at=None)
    with pytest.raises(RuntimeError, match="only attempts yielded"), attempt:
        pass


def test_iteration_deposits_into_the_budget(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=1.0, min_retries_per_second=0, clock=clock)
    for attempt in policy(clock, budget=budget):
        with attempt:
            pass
    assert budget.balance == 1.0


async def test_async_iteration(clock: ManualClock, events: Recorder) -> None:
    step = script([ConnectionError("a"), "ok"])

    async def run() -> Any:
        async for attempt in policy(clock, events, budget=RetryBudget(clock=clock)):
            with attempt:
                await asyncio.sleep(0)
                value = step()
        return value

    task = asyncio.create_task(run())
    for _ in range(10):
        await asyncio.sleep(0)
    clock.advance(1.0)
    assert await task == "ok"
    assert [e.attempt for e in events.attempted] == [1]


async def test_async_iteration_cuts_an_attempt_off_at_the_deadline(
    clock: ManualClock, events: Recorder
) -> None:
    async def run() -> None:
        async for attempt in policy(clock, events, deadline=5.0, on=TimeoutError):
            with attempt:
                await asyncio.Event().wait()

    task = asyncio.create_task(run())
    for _ in range(10):
        await asyncio.sleep(0)
    clock.advance(5.0)
    with pytest.raises(TimeoutError, match="cut off at the retry deadline"):
        await task
    # Even with on=TimeoutError: a timeout at the deadline is the deadline, not a retry.
    assert [e.reason for e in events.gave_up] == ["deadline"]
    assert events.attempted == []


async def test_async_iteration_outside_cancel_passes_through(clock: ManualClock) -> None:
    async def run() -> None:
        async for attempt in policy(clock, deadline=5.0):
            with attempt:
                await asyncio.Event().wait()

    task = asyncio.create_task(run())
    for _ in range(10):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_async_iteration_result_predicate(clock: ManualClock) -> None:
    statuses = iter([503, 200])
    async for attempt in policy(clock, on=(), on_result=lambda s: s == 503, wait_initial=0.0):
        with attempt:
            status = next(statuses)
            attempt.result = status
    assert status == 200
