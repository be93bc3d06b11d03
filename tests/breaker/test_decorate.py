"""The ways in: decorator (sync and async), direct calls, context managers, the primitive."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator

import pytest

from sysdesign_kit.breaker import CircuitBreaker, State
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen
from sysdesign_kit.events import BreakerCallFinished, Event


class Down(Exception):
    pass


@pytest.fixture(params=["quiet", "listened"])
def breaker(request: pytest.FixtureRequest, clock: ManualClock) -> CircuitBreaker:
    """Once on the lean path (no listener) and once on the full one."""
    listeners = [lambda event: None] if request.param == "listened" else []
    return CircuitBreaker("dep", clock=clock, minimum_calls=2, listeners=listeners)


def test_sync_decorator_keeps_the_function(breaker: CircuitBreaker) -> None:
    @breaker
    def lookup(user: str, *, full: bool = False) -> str:
        """Find a user."""
        return f"{user}:{full}"

    assert lookup("ann", full=True) == "ann:True"
    assert lookup.__name__ == "lookup"
    assert lookup.__doc__ == "Find a user."
    assert str(inspect.signature(lookup)) == "(user: 'str', *, full: 'bool' = False) -> 'str'"
    assert not inspect.iscoroutinefunction(lookup)


async def test_async_decorator_keeps_the_function(breaker: CircuitBreaker) -> None:
    @breaker
    async def lookup(user: str) -> str:
        await asyncio.sleep(0)
        return user.upper()

    assert inspect.iscoroutinefunction(lookup)
    assert await lookup("ann") == "ANN"
    assert lookup.__name__ == "lookup"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_decorated_failures_trip_and_then_fail_fast(
    breaker: CircuitBreaker, kind: str
) -> None:
    calls = []

    def sync_down() -> None:
        calls.append(1)
        raise Down

    async def async_down() -> None:
        calls.append(1)
        raise Down

    protected = breaker(sync_down if kind == "sync" else async_down)

    async def run() -> None:
        result = protected()
        if inspect.isawaitable(result):
            await result

    for _ in range(2):
        with pytest.raises(Down):
            await run()
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpen) as caught:
        await run()
    assert len(calls) == 2  # refused without calling
    assert caught.value.name == "dep"
    assert caught.value.__context__ is None


def test_methods_can_be_decorated(breaker: CircuitBreaker) -> None:
    class Client:
        def __init__(self) -> None:
            self.base = "https://x"

        @breaker
        def get(self, path: str) -> str:
            return self.base + path

    assert Client().get("/a") == "https://x/a"


async def test_direct_calls(breaker: CircuitBreaker) -> None:
    async def add(a: int, b: int = 0) -> int:
        return a + b

    async def divide(a: int, b: int) -> float:
        return a / b

    assert breaker.call(divmod, 7, 2) == (3, 1)
    assert await breaker.call_async(add, 1, b=2) == 3
    with pytest.raises(ZeroDivisionError):
        breaker.call(divmod, 1, 0)
    with pytest.raises(ZeroDivisionError):
        await breaker.call_async(divide, 1, 0)  # 2 of 4
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpen):
        await breaker.call_async(add, 1)


def test_context_manager(breaker: CircuitBreaker) -> None:
    with breaker as entered:
        assert entered is breaker
    with pytest.raises(Down), breaker:
        raise Down  # 1 of 2
    assert breaker.state is State.OPEN
    ran = False
    with pytest.raises(CircuitOpen), breaker:
        ran = True
    assert not ran


async def test_async_context_manager(breaker: CircuitBreaker, clock: ManualClock) -> None:
    async with breaker:
        await asyncio.sleep(0)
    with pytest.raises(Down):
        async with breaker:
            raise Down  # 1 of 2
    with pytest.raises(CircuitOpen):
        async with breaker:
            pass
    clock.advance(30)
    async with breaker:  # a trial
        pass
    assert breaker.state is State.HALF_OPEN


async def test_context_managers_nest_and_stay_per_task(clock: ManualClock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker("dep", clock=clock, listeners=[events.append])
    with breaker, breaker:
        clock.advance(1.0)
    durations = [e.duration for e in events if isinstance(e, BreakerCallFinished)]
    assert durations == [1.0, 1.0]

    release = asyncio.Event()

    async def hold(seconds: float) -> None:
        async with breaker:
            await release.wait()
            clock.advance(seconds)

    tasks = [asyncio.create_task(hold(s)) for s in (0.5, 0.25)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert breaker.stats().calls == 4
    assert breaker._held.get() == ()


def test_the_primitive(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=2, ignore=KeyError)
    permit = breaker.acquire()
    breaker.on_success(permit, duration=0.1)
    permit = breaker.acquire()
    breaker.on_error(permit, KeyError("x"))  # ignored
    permit = breaker.acquire()
    breaker.on_result(permit, "fine")
    assert breaker.stats().calls == 2
    breaker.on_failure(breaker.acquire())
    breaker.on_error(breaker.acquire(), Down())
    assert breaker.state is State.OPEN


def test_not_a_function() -> None:
    breaker = CircuitBreaker("dep")
    with pytest.raises(TypeError, match="expected a function"):
        breaker(42)  # type: ignore[call-overload]


def test_generator_functions_are_refused() -> None:
    breaker = CircuitBreaker("dep")

    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> AsyncIterator[int]:
        yield 1

    for func in (numbers, anumbers):
        with pytest.raises(TypeError, match="generator function"):
            breaker(func)


@pytest.mark.parametrize(
    "settings",
    [{}, {"slow_call_threshold": 10.0}, {"failure_if": lambda result: result is None}],
    ids=["lean", "slow-calls", "failure-if"],
)
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_every_wrapper_walks_the_whole_cycle(
    clock: ManualClock, settings: dict[str, object], kind: str
) -> None:
    breaker = CircuitBreaker(
        "dep",
        clock=clock,
        minimum_calls=1,
        half_open_calls=1,
        **settings,  # type: ignore[arg-type]
    )
    fail = {"now": False}

    def sync_work() -> str:
        if fail["now"]:
            raise Down
        return "ok"

    async def async_work() -> str:
        return sync_work()

    protected = breaker(sync_work if kind == "sync" else async_work)

    async def call() -> object:
        result = protected()
        return await result if inspect.isawaitable(result) else result

    assert await call() == "ok"
    fail["now"] = True
    with pytest.raises(Down):
        await call()
    with pytest.raises(CircuitOpen) as refused:
        await call()
    assert refused.value.state == "open"
    clock.advance(30)
    held = breaker.acquire()  # the one trial
    with pytest.raises(CircuitOpen) as refused:
        await call()
    assert (refused.value.state, refused.value.__context__) == ("half_open", None)
    breaker.release(held)
    fail["now"] = False
    assert await call() == "ok"  # the trial, through the wrapper
    assert breaker.state is State.CLOSED
