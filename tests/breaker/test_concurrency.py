"""Threads and tasks: exact trial admission, callers run concurrently, nothing is lost, and
cancellation or interpreter exit never counts."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable

import pytest

from sysdesign_kit.breaker import CircuitBreaker, CountWindow, State
from sysdesign_kit.breaker import state as machine
from sysdesign_kit.breaker.breaker import _Trial
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen
from sysdesign_kit.events import Event


class Down(Exception):
    pass


def open_breaker(clock: ManualClock, **settings: object) -> CircuitBreaker:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=1, **settings)  # type: ignore[arg-type]
    breaker.on_failure(breaker.acquire())
    assert breaker.state is State.OPEN
    return breaker


def run_threads(count: int, target: Callable[[], None]) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def half_open_round(trials: int) -> None:
    clock = ManualClock()
    breaker = open_breaker(clock, half_open_calls=trials)
    clock.advance(30)
    start = threading.Barrier(16)
    admitted: list[object] = []
    rejected = []

    def hammer() -> None:
        start.wait()
        for _ in range(50):
            try:
                admitted.append(breaker.acquire())
            except CircuitOpen as error:
                rejected.append(error)

    run_threads(16, hammer)
    assert len(admitted) == trials
    assert all(type(permit) is _Trial for permit in admitted)
    assert len(rejected) == 16 * 50 - trials
    assert {e.state for e in rejected} == {"half_open"}
    assert breaker.state is State.HALF_OPEN
    for permit in admitted:
        breaker.on_success(permit)  # type: ignore[arg-type]
    assert breaker.state is State.CLOSED


@pytest.mark.parametrize("trials", [1, 3, 5])
def test_sixteen_threads_get_exactly_the_trial_permits(trials: int) -> None:
    for _ in range(30):  # many rounds: the OPEN -> HALF_OPEN race differs each time
        half_open_round(trials)


@pytest.mark.parametrize("listened", [False, True])
@pytest.mark.parametrize("state", ["closed", "half_open"])
def test_the_function_never_runs_under_a_lock(
    clock: ManualClock, listened: bool, state: str
) -> None:
    """Eight callers must be inside the function at the same time to pass the barrier."""
    callers = 8
    listeners = [lambda event: None] if listened else []
    breaker = CircuitBreaker(
        "dep", clock=clock, minimum_calls=1, half_open_calls=callers, listeners=listeners
    )
    if state == "half_open":
        breaker.on_failure(breaker.acquire())
        clock.advance(30)
    inside = threading.Barrier(callers, timeout=10)

    @breaker
    def meet() -> int:
        return inside.wait()

    results: list[int] = []
    run_threads(callers, lambda: results.append(meet()))
    assert sorted(results) == list(range(callers))
    assert breaker.state is State.CLOSED


def test_no_call_is_lost_across_threads(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, window=CountWindow(100_000), minimum_calls=1_000)
    failures = []

    @breaker
    def work(fail: bool) -> None:
        if fail:
            raise Down

    def hammer() -> None:
        rng = random.Random()
        failed = 0
        for _ in range(2_000):
            fail = rng.random() < 0.2
            try:
                work(fail)
            except Down:
                failed += 1
        failures.append(failed)

    run_threads(8, hammer)
    stats = breaker.stats()
    assert breaker.state is State.CLOSED
    assert (stats.calls, stats.failures) == (16_000, sum(failures))


async def test_many_tasks_get_exactly_the_trial_permits(clock: ManualClock) -> None:
    breaker = open_breaker(clock)
    clock.advance(30)
    release = asyncio.Event()
    entered = []

    @breaker
    async def probe(n: int) -> int:
        entered.append(n)
        await release.wait()
        return n

    tasks = [asyncio.create_task(probe(n)) for n in range(100)]
    await asyncio.sleep(0)
    assert len(entered) == 3
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(r for r in results if isinstance(r, int)) == sorted(entered)
    assert sum(isinstance(r, CircuitOpen) for r in results) == 97
    assert breaker.state is State.CLOSED


async def test_a_cancelled_trial_gives_its_permit_back(clock: ManualClock) -> None:
    events: list[Event] = []
    breaker = open_breaker(clock, half_open_calls=1, listeners=[events.append])
    events.clear()
    clock.advance(30)
    never = asyncio.Event()

    @breaker
    async def hang() -> None:
        await never.wait()

    task = asyncio.create_task(hang())
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpen):
        await hang()  # the one trial is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is State.HALF_OPEN
    assert breaker.stats().trials == 0
    assert [type(e).__name__ for e in events] == ["BreakerTransitioned", "BreakerRejected"]

    @breaker
    async def fine() -> str:
        return "ok"

    assert await fine() == "ok"
    assert breaker.state is State.CLOSED


async def test_cancellation_while_closed_counts_nothing(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=1)

    @breaker
    async def hang() -> None:
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(hang()) for _ in range(5)]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert breaker.state is State.CLOSED
    assert breaker.stats().calls == 0


async def test_wait_for_timeout_on_a_trial_is_cancellation(clock: ManualClock) -> None:
    # A caller's own timeout cancels the call: it says nothing about the dependency.
    breaker = open_breaker(clock, half_open_calls=1)
    clock.advance(30)

    @breaker
    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(hang(), timeout=0.01)
    assert breaker.stats().trials == 0
    assert breaker.state is State.HALF_OPEN


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(2)])
@pytest.mark.parametrize("kind", ["sync", "async", "with"])
async def test_interpreter_exit_never_counts(
    clock: ManualClock, error: BaseException, kind: str
) -> None:
    breaker = open_breaker(clock, half_open_calls=1)
    clock.advance(30)

    def sync_exit() -> None:
        raise error

    async def async_exit() -> None:
        raise error

    async def exit_through_the_breaker() -> None:
        if kind == "sync":
            breaker(sync_exit)()
        elif kind == "async":
            await breaker(async_exit)()
        else:
            with breaker:
                raise error

    with pytest.raises(type(error)):
        await exit_through_the_breaker()
    assert breaker.state is State.HALF_OPEN
    assert breaker.stats().trials == 0  # the permit came back
    breaker.on_success(breaker.acquire())
    assert breaker.state is State.CLOSED


def test_operators_win_against_racing_callers() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=1, open_for=0.001)
    stop = threading.Event()
    ticking = threading.Lock()  # ManualClock itself is not meant for threads

    def churn() -> None:
        while not stop.is_set():
            try:
                breaker.on_failure(breaker.acquire())
            except CircuitOpen:
                with ticking:
                    clock.advance(0.001)

    workers = [threading.Thread(target=churn) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(200):
            breaker.force_open()
            assert breaker.forced
            assert breaker.state is State.OPEN
            breaker.reset()
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    breaker.force_closed()
    assert (breaker.state, breaker.forced) == (State.CLOSED, True)


def test_a_caller_that_loses_the_half_open_claim_is_refused_not_blocked(
    clock: ManualClock,
) -> None:
    breaker = open_breaker(clock, half_open_calls=2)
    clock.advance(30)
    opened = breaker._period
    opened.claim.pop()  # another thread took the claim and is about to store its period
    with pytest.raises(CircuitOpen) as refused:
        breaker.acquire()
    assert (refused.value.state, refused.value.retry_after) == ("half_open", 0.0)
    opened.claim.append(True)
    assert type(breaker.acquire()) is _Trial


def test_a_caller_that_loses_the_claim_uses_the_winners_period(clock: ManualClock) -> None:
    breaker = open_breaker(clock)
    clock.advance(30)
    opened = breaker._period
    opened.claim.pop()
    winner = breaker._make_period(machine.acquire(breaker.policy, opened.status, 1030.0).status)
    breaker._period = winner  # the other thread's transition has landed
    assert breaker._admit(opened).period is winner  # type: ignore[union-attr]
    breaker.reset()  # or the winner closed it: the loser is admitted as a CLOSED call
    assert breaker._admit(opened) is breaker._period


def test_an_operator_waits_for_a_transition_in_flight(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock)
    current = breaker._period
    current.claim.pop()  # a transition is in flight on another thread
    landed = threading.Timer(0.02, lambda: current.claim.append(True))
    landed.start()
    breaker.force_open()  # spins (yielding the GIL) until the claim comes back
    landed.join()
    assert (breaker.state, breaker.forced) == (State.OPEN, True)
