"""Shared breakers in async code: the same state for every way in, and a call that must ask
Redis for a trial permit awaits a worker thread instead of blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sysdesign_kit.breaker import CircuitBreaker, State
from sysdesign_kit.breaker.redis import RedisBreakerState
from sysdesign_kit.breaker.redis_rules import SharedView
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen
from tests.breaker.test_redis_support import Boom, Maker, counted, fail, processes, settle

pytestmark = pytest.mark.redis


@pytest.fixture
def make(redis_url: str, redis_prefix: str, clock: ManualClock) -> Iterator[Maker]:
    yield from processes(redis_url, redis_prefix, clock)


class Gate:
    """Holds every script call of a state until opened (the real call then runs)."""

    def __init__(self, state: RedisBreakerState) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        real = state.call

        def call(*args: Any) -> SharedView:
            self.entered.set()
            self.opened.wait(10)
            return real(*args)

        state.call = call  # type: ignore[method-assign]

    async def wait_entered(self) -> None:
        deadline = time.monotonic() + 10
        while not self.entered.is_set():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)


async def up() -> str:
    return "up"


async def test_every_async_way_in_shares_one_state(make: Maker, clock: ManualClock) -> None:
    (sa, a), (sb, b) = make(), make()

    @a
    async def down() -> str:
        raise Boom

    protected = b(up)
    assert await protected() == "up"  # b's first contact
    settle(sb)
    for _ in range(4):
        with pytest.raises(Boom):
            await down()
    settle(sa)
    clock.advance(1.0)
    assert await b.call_async(up) == "up"  # stale, and its flush learns the trip
    settle(sb)
    with pytest.raises(CircuitOpen):
        await protected()
    with pytest.raises(CircuitOpen):
        async with b:
            pass
    clock.advance(30.0)
    async with b:  # a trial, asked for on a worker
        pass
    assert await protected() == "up"
    assert await b.call_async(up) == "up"
    settle(sb)
    assert sb.peek(b).state is State.CLOSED
    assert b.state is State.CLOSED
    sa.sync(a)
    assert a.state is State.CLOSED


async def test_asking_for_a_trial_does_not_block_the_loop(make: Maker, clock: ManualClock) -> None:
    state, breaker = make()
    fail(breaker, 4)
    settle(state)
    clock.advance(30.0)
    gate = Gate(state)
    task = asyncio.create_task(breaker.call_async(up))
    await gate.wait_entered()  # the ask is on the wire (held)...
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0)  # ...and the loop keeps running other tasks
        ticks += 1
    assert not task.done()
    with pytest.raises(CircuitOpen):
        await breaker.call_async(up)  # other callers: refused while one asks
    gate.opened.set()
    assert await task == "up"
    assert ticks == 20


async def test_a_caller_cancelled_while_asking_gives_its_trial_back(
    make: Maker, clock: ManualClock
) -> None:
    state, breaker = make(half_open_calls=1)
    fail(breaker, 4)
    settle(state)
    clock.advance(30.0)
    gate = Gate(state)
    task = asyncio.create_task(breaker.aacquire())
    await gate.wait_entered()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.opened.set()  # Redis hands out the trial; nobody is there to use it
    settle(state)
    shared = state.peek(breaker)
    assert (shared.state, shared.trials) == (State.HALF_OPEN, 0)
    trial = await breaker.aacquire()  # the permit is free again
    breaker.on_success(trial)
    settle(state)
    assert state.peek(breaker).state is State.CLOSED


async def test_a_caller_cancelled_before_its_ask_left_gives_the_turn_back(
    make: Maker, clock: ManualClock
) -> None:
    state, breaker = make(state_options={"workers": 1}, half_open_calls=1)
    fail(breaker, 4)
    settle(state)
    clock.advance(30.0)
    busy = threading.Event()
    assert state.submit(lambda: busy.wait(10))  # the only worker is busy
    task = asyncio.create_task(breaker.aacquire())
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    busy.set()
    settle(state)
    assert state.peek(breaker).trials == 0
    breaker.on_success(breaker.acquire())  # this process may ask again
    settle(state)
    assert breaker.state is State.CLOSED


async def test_aacquire_on_an_in_memory_breaker(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=1)
    breaker.on_failure(await breaker.aacquire())
    with pytest.raises(CircuitOpen):
        await breaker.aacquire()


async def test_aacquire_while_closed_needs_no_round_trip(make: Maker) -> None:
    state, breaker = make()
    ops = counted(state)
    permit = await breaker.aacquire()
    breaker.on_success(permit)  # the first finished call syncs, from a worker
    settle(state)
    assert ops == ["f"]
    breaker.on_success(await breaker.aacquire())
    assert ops == ["f"]
