"""Every way in (sync/async decorator, call, acall; with and without a deadline) behaves alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.retry import Attempt, Retry, RetryBudget, current_attempt

FORMS = [
    ("sync decorator", False, None),
    ("sync decorator", False, 60.0),
    ("call", False, None),
    ("call", False, 60.0),
    ("async decorator", True, None),
    ("async decorator", True, 60.0),
    ("acall", True, None),
    ("acall", True, 60.0),
]


def make(is_async: bool, body: Callable[[], Any]) -> Callable[..., Any]:
    """A function running ``body``; the async one waits once first (so it is guarded)."""
    if not is_async:
        return body

    async def work() -> Any:
        await asyncio.sleep(0)
        return body()

    return work


async def invoke(form: str, policy: Retry, fn: Callable[..., Any]) -> Any:
    if form == "sync decorator":
        return policy(fn)()
    if form == "call":
        return policy.call(fn)
    if form == "async decorator":
        return await policy(fn)()
    return await policy.acall(fn)


def policy_for(clock: ManualClock, deadline: float | None, **kw: Any) -> Retry:
    kw.setdefault("on", ConnectionError)
    return Retry(clock=clock, deadline=deadline, wait_initial=0.0, wait_max=0.0, **kw)


@pytest.mark.parametrize(("form", "is_async", "deadline"), FORMS)
async def test_retry_then_succeed_with_a_budget(
    clock: ManualClock, form: str, is_async: bool, deadline: float | None
) -> None:
    budget = RetryBudget(ratio=1.0, min_retries_per_second=0, clock=clock)
    budget.deposit()  # pays for the one retry below
    calls: list[Attempt | None] = []

    def body() -> str:
        calls.append(current_attempt())
        if len(calls) == 1:
            raise ConnectionError
        return "ok"

    assert (
        await invoke(form, policy_for(clock, deadline, budget=budget), make(is_async, body)) == "ok"
    )
    assert calls[0] is None
    assert calls[1] is not None
    assert calls[1].number == 2
    assert budget.balance == 1.0  # two deposits, one withdrawal


@pytest.mark.parametrize(("form", "is_async", "deadline"), FORMS)
async def test_single_attempt_returns_a_matching_result(
    clock: ManualClock, form: str, is_async: bool, deadline: float | None
) -> None:
    policy = policy_for(clock, deadline, attempts=1, on_result=lambda r: r == 503)
    assert await invoke(form, policy, make(is_async, lambda: 503)) == 503


@pytest.mark.parametrize(("form", "is_async", "deadline"), FORMS)
async def test_result_retry_then_success(
    clock: ManualClock, form: str, is_async: bool, deadline: float | None
) -> None:
    statuses = iter([503, 200])
    policy = policy_for(clock, deadline, on_result=lambda r: r == 503)
    assert await invoke(form, policy, make(is_async, lambda: next(statuses))) == 200


@pytest.mark.parametrize(("form", "is_async", "deadline"), FORMS)
async def test_nested_inside_a_retry_sees_no_outer_attempt(
    clock: ManualClock, form: str, is_async: bool, deadline: float | None
) -> None:
    seen: list[Attempt | None] = []
    inner = policy_for(clock, deadline, name="inner")
    outer = policy_for(clock, None, name="outer")
    fn = make(is_async, lambda: seen.append(current_attempt()))
    outer_calls = 0

    async def outer_body() -> None:
        nonlocal outer_calls
        outer_calls += 1
        await invoke(form, inner, fn)
        if outer_calls == 1:
            raise ConnectionError

    await outer.acall(outer_body)
    assert seen == [None, None]


@pytest.mark.parametrize(("form", "is_async", "deadline"), FORMS)
async def test_not_retryable_is_raised(
    clock: ManualClock, form: str, is_async: bool, deadline: float | None
) -> None:
    def body() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        await invoke(form, policy_for(clock, deadline), make(is_async, body))


def test_iterating_the_iterator_returns_itself(clock: ManualClock) -> None:
    attempts = iter(policy_for(clock, None))
    assert iter(attempts) is attempts


async def test_async_iterator_returns_itself(clock: ManualClock) -> None:
    attempts = aiter(policy_for(clock, None))
    assert aiter(attempts) is attempts


async def test_closing_a_suspended_attempt_closes_the_inner_coroutine(clock: ManualClock) -> None:
    closed: list[bool] = []

    @policy_for(clock, 10.0)
    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            closed.append(True)

    coro = hang()
    coro.send(None)  # the attempt suspends: the guard is armed on this test's task
    await asyncio.sleep(0)  # its watcher starts sleeping on the clock
    assert clock.pending_sleepers == 1
    coro.close()
    assert closed == [True]
    await asyncio.sleep(0)
    assert clock.pending_sleepers == 0  # the guard was released


def test_driving_an_attempt_without_an_event_loop(clock: ManualClock) -> None:
    class Pending:
        def __await__(self) -> Any:
            return (yield self)

    @policy_for(clock, 10.0)
    async def work() -> str:
        await Pending()
        return "done"

    coro = work()
    assert isinstance(coro.send(None), Pending)  # no loop, no task: no guard either
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value == "done"


def test_call_refuses_a_coroutine_function(clock: ManualClock) -> None:
    async def work() -> None:
        return None

    with pytest.raises(TypeError, match=r"use 'await policy\.acall"):
        policy_for(clock, None).call(work)  # type: ignore[arg-type]


@pytest.mark.parametrize("deadline", [None, 10.0])
async def test_acall_accepts_any_awaitable(clock: ManualClock, deadline: float | None) -> None:
    loop = asyncio.get_running_loop()
    calls = 0

    def start() -> asyncio.Future[str]:
        nonlocal calls
        calls += 1
        future: asyncio.Future[str] = loop.create_future()
        if calls == 1:
            future.set_exception(ConnectionError())
        else:
            loop.call_soon(future.set_result, "done")
        return future

    assert await policy_for(clock, deadline).acall(start) == "done"
    assert calls == 2


def test_replace_keeps_listeners_given_as_an_iterator(clock: ManualClock) -> None:
    heard: list[object] = []
    base = Retry(on=ConnectionError, clock=clock, wait_initial=0.0, listeners=iter([heard.append]))
    derived = base.replace(name="derived")
    calls = iter([ConnectionError(), None])

    def work() -> None:
        outcome = next(calls)
        if outcome is not None:
            raise outcome

    derived.call(work)
    assert len(heard) == 1


def test_an_unprintable_error_still_gets_an_event(clock: ManualClock) -> None:
    class Odd(ConnectionError):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    heard: list[Any] = []
    policy = Retry(on=ConnectionError, clock=clock, attempts=1, listeners=[heard.append])
    with pytest.raises(Odd):
        policy.call(lambda: (_ for _ in ()).throw(Odd()))
    assert heard[0].error == "Odd"
