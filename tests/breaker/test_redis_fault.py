"""Redis hangs, dies and comes back under shared breakers: calls keep working on the local
state (no caller waits for a flush), one `BackendFailure` per burst, and the shared state
resumes alone, on a server that lost every script.

Runs its own ``redis-server`` on a free loopback port (never the shared one), with the helper
of ``tests/integration/test_redis_fault.py``: SIGSTOP makes it hang, terminating it refuses
connections, starting it again brings back an empty server.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sysdesign_kit.breaker import CircuitBreaker, CountWindow, State
from sysdesign_kit.breaker.redis import RedisBreakerState
from sysdesign_kit.errors import BackendUnavailable, CircuitOpen
from sysdesign_kit.events import BackendFailure, Event
from tests.breaker.test_redis_support import Boom, boom, ok
from tests.integration.test_redis_fault import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT = 0.1
#: How long any single call may take while Redis is away (a trial's ask waits one timeout).
PATIENCE = 1.0
#: A call that never waits for Redis (the success path, refusals, failures).
QUICK = 0.05


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH: this test runs its own (scripts/test.sh installs it)"
        )
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def reported(events: list[Event]) -> int:
    return sum(isinstance(e, BackendFailure) and e.outcome == "local" for e in events)


def timed(call: Callable[[], object]) -> float:
    start = time.monotonic()
    with contextlib.suppress(Boom, CircuitOpen):
        call()
    return time.monotonic() - start


def make_state(server: RedisServer, **options: object) -> RedisBreakerState:
    settings: dict[str, object] = {
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        "flush_interval": 0.05,
        "retry_interval": 0.3,
        **options,
    }
    return RedisBreakerState.from_url(server.url, **settings)


def test_hung_dead_and_back(server: RedisServer) -> None:
    events: list[Event] = []
    state, watcher_state = make_state(server), make_state(server)
    # The last 8 calls: 4 failures after any number of successes trip it.
    settings: dict[str, object] = {
        "window": CountWindow(8),
        "minimum_calls": 4,
        "open_for": 0.3,
        "half_open_calls": 2,
    }
    breaker = CircuitBreaker("dep", shared=state, listeners=[events.append], **settings)  # type: ignore[arg-type]
    watcher = CircuitBreaker("dep", shared=watcher_state, **settings)  # type: ignore[arg-type]
    try:
        breaker.call(ok)
        state.drain()
        assert state.peek(breaker).state is State.CLOSED

        for phase, act in (
            ("hung", lambda: server.signal(signal.SIGSTOP)),
            ("dead", server.stop),
        ):
            act()
            before = reported(events)
            slowest = 0.0
            deadline = time.monotonic() + 0.4
            while time.monotonic() < deadline:  # flushes fall due and fail meanwhile
                slowest = max(slowest, timed(lambda: breaker.call(ok)))
                time.sleep(0.005)
            assert slowest < QUICK, (phase, slowest)
            wait_for(lambda: reported(events) == before + 1)  # noqa: B023 - used at once
            slowest = max(timed(lambda: breaker.call(boom)) for _ in range(4))
            assert breaker.state is State.OPEN, phase  # tripped on its own window
            assert slowest < QUICK, (phase, slowest)
            with pytest.raises(CircuitOpen):
                breaker.call(ok)
            time.sleep(0.35)  # the open time passes: trials are asked of Redis, then local
            slowest = max(timed(lambda: breaker.call(ok)) for _ in range(2))
            assert slowest < PATIENCE, (phase, slowest)
            assert breaker.state is State.CLOSED, phase
            assert reported(events) == before + 1, phase  # one per burst
            with pytest.raises(BackendUnavailable):
                breaker.reset()  # operators say so
            if phase == "hung":
                server.signal(signal.SIGCONT)
                wait_for(lambda: state.sync(breaker) is not None)

        server.start()  # an empty server, no scripts loaded
        time.sleep(0.3)
        wait_for(lambda: state.sync(breaker) is not None)
        for _ in range(4):
            timed(lambda: breaker.call(boom))
        state.drain()
        assert watcher_state.peek(watcher).state is State.OPEN  # shared again
        assert watcher_state.sync(watcher) is not None
        assert watcher.state is State.OPEN
    finally:
        state.close()
        watcher_state.close()


async def test_async_calls_never_block_the_loop_on_a_hung_redis(server: RedisServer) -> None:
    events: list[Event] = []
    state = make_state(server, retry_interval=0.05)
    breaker = CircuitBreaker(
        "dep", shared=state, minimum_calls=4, open_for=0.2, listeners=[events.append]
    )

    async def up() -> str:
        return "up"

    async def down() -> str:
        raise Boom

    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        assert await breaker.call_async(up) == "up"
        state.drain()
        server.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 1.0
        tripped = False
        while time.monotonic() < deadline:  # flushes, a trip's write, trial asks: all hang
            try:
                await breaker.call_async(up if tripped else down)
            except Boom:
                pass
            except CircuitOpen:
                tripped = True
            await asyncio.sleep(0.01)
        assert tripped
        assert reported(events) == 1
        assert max(gaps) < 0.08, max(gaps)  # waits of 0.1 s happened on workers only
        server.signal(signal.SIGCONT)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if state.sync(breaker) is not None:
                break
        # Writes that timed out were already in the server's socket: it runs them when it
        # resumes. The trip of the period it was still in lands late and opens the shared
        # breaker for one open time; then trials pass and it closes.
        passed = False
        for _ in range(100):
            try:
                passed = await breaker.call_async(up) == "up"
            except CircuitOpen:
                await asyncio.sleep(0.02)
                continue
            if passed and breaker.state is State.CLOSED:
                break
        assert passed
        assert breaker.state is State.CLOSED
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        state.close()
