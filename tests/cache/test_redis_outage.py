"""Redis stopped mid-run under a busy cache: no exception reaches a caller, values come from
the loader, `BackendFailure` events say so, and the cache is back on Redis by itself once the
server is.

Two caches run side by side through each outage of their own ``redis-server`` (a free
loopback port, never the shared one): one over a bare `RedisBackend`, one over
`GuardedBackend(RedisBackend)`. Each has ten asyncio callers and one thread calling
``get_or_load`` in a loop over five keys. Killed, the server refuses connections until it
is started again on the same port, empty; hung (SIGSTOP), its replies time out.

Per-call latencies are printed per phase (``pytest -s``); the assertions hold what the guard
is for, with generous bounds.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sysdesign_kit.cache import Cache
from sysdesign_kit.cache.guarded import GuardedBackend, backend_breaker
from sysdesign_kit.cache.redis import RedisBackend
from sysdesign_kit.events import BackendFailure, BreakerTransitioned, Event
from tests.integration.test_redis_fault import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT = 0.2
KEYS = [f"product:{n}" for n in range(5)]
TASKS = 10
#: Between two calls of one caller: callers do other work, and a call answered without
#: any I/O (a breaker's refusal) must not starve the event loop.
PAUSE = 0.005
WARM, DOWN, BACK = "warm", "down", "back"


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


@pytest.fixture(autouse=True)
def quiet(caplog: pytest.LogCaptureFixture) -> None:
    # The cache logs a WARNING per failed call; here they would only fill memory.
    caplog.set_level(logging.CRITICAL, logger="sysdesign_kit.cache")


@dataclass
class Run:
    """One cache under load: its callers' latencies, errors, loads and events."""

    name: str
    cache: Cache
    phase: list[str]
    events: list[Event]
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    wrong: list[tuple[str, Any]] = field(default_factory=list)

    def loader(self, key: str) -> dict[str, Any]:
        self.loads.append(time.monotonic())
        return {"key": key, "price": 19.99}

    async def aloader(self, key: str) -> dict[str, Any]:
        return self.loader(key)

    def record(self, phase: str, start: float, key: str, value: Any) -> None:
        self.latencies.setdefault(phase, []).append(time.perf_counter() - start)
        if value != {"key": key, "price": 19.99}:
            self.wrong.append((key, value))

    async def caller(self, index: int, stop: asyncio.Event) -> None:
        n = index
        while not stop.is_set():
            key = KEYS[n % len(KEYS)]
            n += 1
            phase = self.phase[0]
            start = time.perf_counter()
            try:
                value = await self.cache.get_or_load(key, lambda key=key: self.aloader(key))
            except Exception as exc:  # the point of the test: none may reach a caller
                self.errors.append(exc)
            else:
                self.record(phase, start, key, value)
            await asyncio.sleep(PAUSE)

    def thread_caller(self, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            key = KEYS[n % len(KEYS)]
            n += 1
            phase = self.phase[0]
            start = time.perf_counter()
            try:
                value = self.cache.sync.get_or_load(key, lambda key=key: self.loader(key))
            except Exception as exc:
                self.errors.append(exc)
            else:
                self.record(phase, start, key, value)
            time.sleep(PAUSE)

    def loads_between(self, start: float, end: float) -> int:
        return sum(start <= at < end for at in self.loads)

    def failures(self) -> list[BackendFailure]:
        return [e for e in self.events if isinstance(e, BackendFailure)]

    def reached_redis(self) -> int:
        """Failed backend calls that were really tried (not refused by the breaker)."""
        return sum(not f.error.startswith("CircuitOpen") for f in self.failures())

    def summary(self, phase: str) -> str:
        values = sorted(self.latencies.get(phase, []))
        if not values:
            return f"{self.name:<8} {phase:<5} no calls"
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return (
            f"{self.name:<8} {phase:<5} calls {len(values):>5}  median "
            f"{statistics.median(values) * 1000:8.3f} ms  p99 {p99 * 1000:8.3f} ms  "
            f"max {values[-1] * 1000:7.1f} ms  over {TIMEOUT * 750:.0f} ms: "
            f"{sum(v >= TIMEOUT * 0.75 for v in values)}"
        )


def make_run(name: str, url: str, phase: list[str], *, guarded: bool) -> Run:
    backend = RedisBackend.from_url(
        url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, prefix=f"t-outage-{name}"
    )
    events: list[Event] = []
    wrapped = (
        GuardedBackend(backend, breaker=backend_breaker("redis", listeners=[events.append]))
        if guarded
        else backend
    )
    cache = Cache(
        name, backend=wrapped, ttl=60, early_refresh_beta=0, guard=False, listeners=[events.append]
    )
    return Run(name, cache, phase, events)


@asynccontextmanager
async def busy(server: RedisServer) -> AsyncIterator[tuple[list[Run], list[str]]]:
    """A bare and a guarded cache on ``server``, each with its callers running; yields them
    warm (every call a hit) and the phase list the callers label their calls with."""
    phase = [WARM]
    runs = [
        make_run("bare", server.url, phase, guarded=False),
        make_run("guarded", server.url, phase, guarded=True),
    ]
    stop, thread_stop = asyncio.Event(), threading.Event()
    tasks = [asyncio.ensure_future(run.caller(i, stop)) for run in runs for i in range(TASKS)]
    threads = [threading.Thread(target=run.thread_caller, args=(thread_stop,)) for run in runs]
    for thread in threads:
        thread.start()
    try:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        assert [run.loads_between(now - 0.3, now) for run in runs] == [0, 0]  # all hits
        yield runs, phase
    finally:
        stop.set()
        thread_stop.set()
        await asyncio.gather(*tasks)
        for thread in threads:
            await asyncio.to_thread(thread.join, 5)
        for run in runs:
            await run.cache.backend.aclose()  # type: ignore[attr-defined]
    print()
    for run in runs:
        for name in (WARM, DOWN, BACK):
            print(run.summary(name))
        print(f"{run.name:<8} backend calls that failed on Redis itself: {run.reached_redis()}")


async def wait_for_hits(runs: list[Run], seconds: float) -> dict[str, float]:
    """Until each run went 0.3 s without a load while its callers kept calling; when each
    did (monotonic seconds)."""
    recovered: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while len(recovered) < len(runs):
        assert time.monotonic() < deadline, f"no recovery within {seconds} s: {recovered}"
        await asyncio.sleep(0.05)
        now = time.monotonic()
        for run in runs:
            if run.name not in recovered and run.loads_between(now - 0.3, now) == 0:
                recovered[run.name] = now - 0.3
    return recovered


def check_failed_open(runs: list[Run], start: float, end: float, loads: int) -> None:
    for run in runs:
        assert run.errors == []
        assert run.wrong == []
        # Down: every read misses, so callers get what the loader returns.
        assert run.loads_between(start, end) >= loads
        assert {(f.operation, f.outcome) for f in run.failures()} >= {
            ("get", "miss"),
            ("set", "not_cached"),
        }
        assert {f.backend for f in run.failures()} == {"redis"}
    bare, guarded = runs
    assert not any(f.error.startswith("CircuitOpen") for f in bare.failures())
    assert any(
        f.error.startswith("CircuitOpen: circuit breaker 'cache-backend:redis' is open")
        for f in guarded.failures()
    )
    moves = [(e.previous, e.state) for e in guarded.events if isinstance(e, BreakerTransitioned)]
    assert moves[0] == ("closed", "open")
    # Guarded, a few calls try Redis until the breaker opens (every caller's first call
    # may be in flight by then).
    assert guarded.reached_redis() <= 2 * (TASKS + 1) + 10


async def test_redis_killed_and_restarted(server: RedisServer) -> None:
    async with busy(server) as (runs, phase):
        phase[0] = DOWN
        server.signal(signal.SIGKILL)
        assert server.process is not None
        server.process.wait(5)
        start = time.monotonic()
        await asyncio.sleep(1.0)
        end = time.monotonic()
        phase[0] = BACK
        server.start()  # same port, empty: no entries, no scripts
        restarted = time.monotonic()
        recovered = await wait_for_hits(runs, 8.0)
        for run in runs:
            print(f"{run.name:<8} hits again {recovered[run.name] - restarted:.2f} s after restart")
    check_failed_open(runs, start, end, 20)
    bare, guarded = runs
    # Refused, a bare cache tries Redis on every call; a guarded one stops after a few.
    assert bare.reached_redis() > 5 * guarded.reached_redis()
    # The breaker probed after its open time and closed again.
    moves = [(e.previous, e.state) for e in guarded.events if isinstance(e, BreakerTransitioned)]
    assert moves[-2:] == [("open", "half_open"), ("half_open", "closed")]
    assert recovered["bare"] - restarted < 2.0
    assert recovered["guarded"] - restarted < 6.0  # within one open time (5 s) and a bit


async def test_redis_hung(server: RedisServer) -> None:
    async with busy(server) as (runs, phase):
        phase[0] = DOWN
        server.signal(signal.SIGSTOP)
        start = time.monotonic()
        await asyncio.sleep(1.2)
        end = time.monotonic()
        phase[0] = BACK
        server.signal(signal.SIGCONT)
        await asyncio.sleep(0.5)
    # Hung, each load of a bare cache waits two timeouts (read, write): few loads.
    check_failed_open(runs, start, end, 5)
    bare, guarded = runs
    # Hung, every bare call waits for the timeout (a read, then a write); the guard lets a
    # few through until it opens, then answers at once.
    assert statistics.median(bare.latencies[DOWN]) >= TIMEOUT * 0.75
    assert statistics.median(guarded.latencies[DOWN]) < TIMEOUT / 4
