"""GuardedBackend: the backend's calls go through a breaker that opens on outages, fails the
calls fast with `BackendUnavailable` while open, and closes after a good probe."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from sysdesign_kit.breaker import CircuitBreaker, CountWindow, State
from sysdesign_kit.cache import Cache, MemoryBackend
from sysdesign_kit.cache.backend import CacheBackend
from sysdesign_kit.cache.guarded import GuardedBackend, GuardedLoadLock, backend_breaker
from sysdesign_kit.cache.load_lock import LoadLock
from sysdesign_kit.cache.redis import RedisBackend
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import (
    BackendUnavailable,
    CircuitOpen,
    ConfigurationError,
    InvalidInput,
)
from sysdesign_kit.events import BackendFailure, BreakerCallFinished, BreakerTransitioned, Event

from .conftest import Recorder


class Flaky:
    """A remote-looking backend over a MemoryBackend that fails while ``down``.

    ``gate`` (when set) holds every async call until it is set, to keep a call in flight.
    """

    kind = "flaky"
    local = False

    def __init__(self, clock: ManualClock) -> None:
        self.store = MemoryBackend(clock=clock)
        self.clock = clock
        #: Seconds each call takes (on the manual clock).
        self.delay = 0.0
        self.down = False
        self.mistaken = False
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.closed: list[str] = []

    def _enter(self) -> None:
        self.calls += 1
        self.clock.advance(self.delay)
        if self.mistaken:
            raise InvalidInput("a bad argument")
        if self.down:
            raise BackendUnavailable("flaky is down") from ConnectionRefusedError(111, "refused")

    def get(self, namespace: str, key: str) -> bytes | None:
        self._enter()
        return self.store.get(namespace, key)

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        self._enter()
        self.store.set(namespace, key, data, ttl, tags)

    def delete(self, namespace: str, key: str) -> bool:
        self._enter()
        return self.store.delete(namespace, key)

    def version(self, namespace: str) -> int:
        self._enter()
        return self.store.version(namespace)

    def bump(self, namespace: str) -> int:
        self._enter()
        return self.store.bump(namespace)

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        self._enter()
        self.store.invalidate_tags(tags)

    async def _aenter(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self._enter()

    async def aget(self, namespace: str, key: str) -> bytes | None:
        await self._aenter()
        return self.store.get(namespace, key)

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        await self._aenter()
        self.store.set(namespace, key, data, ttl, tags)

    async def adelete(self, namespace: str, key: str) -> bool:
        await self._aenter()
        return self.store.delete(namespace, key)

    async def abump(self, namespace: str) -> int:
        await self._aenter()
        return self.store.bump(namespace)

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        await self._aenter()
        self.store.invalidate_tags(tags)

    def close(self) -> None:
        self.closed.append("close")

    async def aclose(self) -> None:
        self.closed.append("aclose")


class FlakyLock:
    """A load lock in memory that fails while its backend is down."""

    ttl = 10.0

    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky
        self.holders: dict[tuple[str, str], str] = {}

    def acquire(self, namespace: str, key: str, token: str) -> tuple[float, bytes | None]:
        self.flaky._enter()
        held = self.holders.setdefault((namespace, key), token) == token
        return (0.0, None) if held else (5.0, None)

    def park(self, namespace: str, key: str, wait: float) -> bool:
        self.flaky._enter()
        return False

    def release(self, namespace: str, key: str, token: str) -> int:
        self.flaky._enter()
        if self.holders.get((namespace, key)) == token:
            del self.holders[namespace, key]
        return 0

    async def aacquire(self, namespace: str, key: str, token: str) -> tuple[float, bytes | None]:
        return self.acquire(namespace, key, token)

    async def apark(self, namespace: str, key: str, wait: float) -> bool:
        return self.park(namespace, key, wait)

    async def arelease(self, namespace: str, key: str, token: str) -> int:
        return self.release(namespace, key, token)


class LockingFlaky(Flaky):
    """A `Flaky` with a load lock, as `RedisBackend` has."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.load_lock = FlakyLock(self)


@pytest.fixture
def flaky(clock: ManualClock) -> Flaky:
    return Flaky(clock)


@pytest.fixture
def guarded(flaky: Flaky, clock: ManualClock) -> GuardedBackend:
    return GuardedBackend(flaky, breaker=backend_breaker(flaky.kind, clock=clock))


def fail(guarded: GuardedBackend, times: int) -> None:
    for _ in range(times):
        with pytest.raises(BackendUnavailable):
            guarded.get("ns", "k")


# -- shape --------------------------------------------------------------------------------------


def test_is_a_backend_like_the_one_it_wraps(flaky: Flaky, clock: ManualClock) -> None:
    guarded = GuardedBackend(flaky)
    assert isinstance(guarded, CacheBackend)
    assert (guarded.kind, guarded.local, guarded.inner) == ("flaky", False, flaky)
    memory = GuardedBackend(MemoryBackend(clock=clock))
    assert (memory.kind, memory.local) == ("memory", True)
    assert repr(guarded).startswith("GuardedBackend(<")
    assert "cache-backend:flaky" in repr(guarded)


def test_default_breaker() -> None:
    breaker = backend_breaker("redis")
    assert breaker.name == "cache-backend:redis"
    assert breaker.window == CountWindow(10)
    policy = breaker.policy
    assert (policy.minimum_calls, policy.failure_rate, policy.open_for) == (5, 0.5, 5.0)
    assert policy.half_open_calls == 1
    assert GuardedBackend(MemoryBackend()).breaker.name == "cache-backend:memory"


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="CacheBackend"):
        GuardedBackend(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="CircuitBreaker"):
        GuardedBackend(MemoryBackend(), breaker=object())  # type: ignore[arg-type]


async def test_every_operation_passes_through(guarded: GuardedBackend, flaky: Flaky) -> None:
    guarded.set("ns", "a", b"1", 60, ["t"])
    assert guarded.get("ns", "a") == b"1"
    assert guarded.delete("ns", "a") is True
    assert guarded.version("ns") == 0
    assert guarded.bump("ns") == 1
    guarded.set("ns", "b", b"2", 60, ["t"])
    guarded.invalidate_tags(["t"])
    assert guarded.get("ns", "b") is None
    await guarded.aset("ns", "c", b"3", 60, ["u"])
    assert await guarded.aget("ns", "c") == b"3"
    assert await guarded.adelete("ns", "c") is True
    assert await guarded.abump("ns") == 2
    await guarded.aset("ns", "d", b"4", 60, ["u"])
    await guarded.ainvalidate_tags(["u"])
    assert await guarded.aget("ns", "d") is None
    assert flaky.calls == 15
    assert guarded.breaker.stats().calls == 10  # the window holds the last 10


async def test_close_and_aclose_reach_the_inner_backend(
    guarded: GuardedBackend, flaky: Flaky
) -> None:
    guarded.close()
    await guarded.aclose()
    assert flaky.closed == ["close", "aclose"]
    bare = GuardedBackend(MemoryBackend())  # no close at all: nothing to do
    bare.close()
    await bare.aclose()


# -- the breaker ----------------------------------------------------------------------------------


def test_failures_pass_through_until_the_breaker_opens(
    guarded: GuardedBackend, flaky: Flaky
) -> None:
    flaky.down = True
    for _ in range(5):
        with pytest.raises(BackendUnavailable, match="flaky is down") as raised:
            guarded.get("ns", "k")
        assert isinstance(raised.value.__cause__, ConnectionRefusedError)  # as raised inside
    assert guarded.breaker.state is State.OPEN
    assert flaky.calls == 5
    with pytest.raises(BackendUnavailable) as raised:
        guarded.set("ns", "k", b"v", 60)
    assert flaky.calls == 5  # not called
    cause = raised.value.__cause__
    assert isinstance(cause, CircuitOpen)
    assert cause.name == "cache-backend:flaky"
    assert cause.retry_after == 5.0
    assert "flaky backend not called: circuit breaker 'cache-backend:flaky' is open" in str(
        raised.value
    )


def test_half_of_the_last_ten_calls_failing_opens_it(guarded: GuardedBackend, flaky: Flaky) -> None:
    for _ in range(10):
        guarded.get("ns", "k")
    flaky.down = True
    fail(guarded, 4)
    assert guarded.breaker.state is State.CLOSED
    fail(guarded, 1)
    assert guarded.breaker.state is State.OPEN


def test_only_backend_unavailable_counts(guarded: GuardedBackend, flaky: Flaky) -> None:
    flaky.mistaken = True
    for _ in range(10):
        with pytest.raises(InvalidInput):
            guarded.set("ns", "k", b"v", 60)  # the caller's mistake, not an outage
    assert guarded.breaker.state is State.CLOSED
    assert guarded.breaker.stats().failures == 0


def test_one_probe_after_five_seconds(
    guarded: GuardedBackend, flaky: Flaky, clock: ManualClock
) -> None:
    flaky.down = True
    fail(guarded, 5)
    clock.advance(4.9)
    fail(guarded, 3)
    assert flaky.calls == 5
    clock.advance(0.1)
    fail(guarded, 1)  # the probe: Redis still down
    assert flaky.calls == 6
    assert guarded.breaker.state is State.OPEN
    assert guarded.breaker.retry_after == 5.0  # open again, for as long (no growth)
    flaky.down = False
    clock.advance(5.0)
    guarded.set("ns", "k", b"v", 60)  # the probe succeeds: closed at once
    assert guarded.breaker.state is State.CLOSED
    assert guarded.get("ns", "k") == b"v"
    assert flaky.calls == 8


async def test_async_calls_share_the_breaker(
    guarded: GuardedBackend, flaky: Flaky, clock: ManualClock
) -> None:
    flaky.down = True
    for _ in range(5):
        with pytest.raises(BackendUnavailable, match="flaky is down"):
            await guarded.aget("ns", "k")
    for call in (
        guarded.aget("ns", "k"),
        guarded.aset("ns", "k", b"v", 60),
        guarded.adelete("ns", "k"),
        guarded.abump("ns"),
        guarded.ainvalidate_tags(["t"]),
    ):
        with pytest.raises(BackendUnavailable) as raised:
            await call
        assert isinstance(raised.value.__cause__, CircuitOpen)
    for sync_call in (
        lambda: guarded.delete("ns", "k"),
        lambda: guarded.version("ns"),
        lambda: guarded.bump("ns"),
        lambda: guarded.invalidate_tags(["t"]),
    ):
        with pytest.raises(BackendUnavailable) as raised:
            sync_call()
        assert isinstance(raised.value.__cause__, CircuitOpen)
    assert flaky.calls == 5


async def test_while_the_probe_runs_other_calls_are_refused(
    guarded: GuardedBackend, flaky: Flaky, clock: ManualClock
) -> None:
    flaky.down = True
    fail(guarded, 5)
    flaky.down = False
    clock.advance(5.0)
    flaky.gate = asyncio.Event()
    probe = asyncio.ensure_future(guarded.aset("ns", "k", b"v", 60))
    await asyncio.sleep(0)
    assert guarded.breaker.state is State.HALF_OPEN
    with pytest.raises(BackendUnavailable, match="half-open") as raised:
        await guarded.aget("ns", "k")
    assert isinstance(raised.value.__cause__, CircuitOpen)
    flaky.gate.set()
    await probe
    assert guarded.breaker.state is State.CLOSED
    assert await guarded.aget("ns", "k") == b"v"


async def test_a_cancelled_probe_gives_its_turn_back(
    guarded: GuardedBackend, flaky: Flaky, clock: ManualClock
) -> None:
    flaky.down = True
    fail(guarded, 5)
    flaky.down = False
    clock.advance(5.0)
    flaky.gate = asyncio.Event()
    probe = asyncio.ensure_future(guarded.aget("ns", "k"))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    flaky.gate.set()
    assert await guarded.aget("ns", "k") is None  # the next caller probes
    assert guarded.breaker.state is State.CLOSED


def test_a_breaker_of_ones_own(flaky: Flaky, clock: ManualClock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        "mine",
        window=CountWindow(2),
        minimum_calls=2,
        failure_on=BackendUnavailable,
        clock=clock,
        listeners=[events.append],
    )
    guarded = GuardedBackend(flaky, breaker=breaker)
    assert guarded.breaker is breaker
    flaky.down = True
    fail(guarded, 2)
    assert breaker.state is State.OPEN
    assert [(e.previous, e.state) for e in events if isinstance(e, BreakerTransitioned)] == [
        ("closed", "open")
    ]


def test_a_breaker_that_times_calls_sees_slow_ones(flaky: Flaky, clock: ManualClock) -> None:
    breaker = CircuitBreaker(
        "timed",
        window=CountWindow(4),
        minimum_calls=4,
        slow_call_threshold=1.0,
        failure_on=BackendUnavailable,
        clock=clock,
    )
    guarded = GuardedBackend(flaky, breaker=breaker)
    flaky.delay = 2.0  # answers, but too slowly
    for _ in range(4):
        assert guarded.get("ns", "k") is None
    assert breaker.state is State.OPEN
    with pytest.raises(BackendUnavailable):
        guarded.set("ns", "k", b"v", 60)


async def test_a_breaker_that_times_calls_sees_slow_ones_async(
    flaky: Flaky, clock: ManualClock
) -> None:
    breaker = CircuitBreaker(
        "timed", window=CountWindow(2), minimum_calls=2, slow_call_threshold=1.0, clock=clock
    )
    guarded = GuardedBackend(flaky, breaker=breaker)
    flaky.delay = 2.0
    assert await guarded.aget("ns", "k") is None
    await guarded.aset("ns", "k", b"v", 60)
    assert breaker.state is State.OPEN
    with pytest.raises(BackendUnavailable):
        await guarded.aget("ns", "k")


async def test_listeners_get_each_call_with_its_duration(flaky: Flaky, clock: ManualClock) -> None:
    events: list[Event] = []
    guarded = GuardedBackend(
        flaky, breaker=backend_breaker("flaky", clock=clock, listeners=[events.append])
    )
    flaky.delay = 0.25
    guarded.get("ns", "k")
    await guarded.aget("ns", "k")
    guarded.bump("ns")
    await guarded.abump("ns")
    flaky.down = True
    fail(guarded, 1)
    finished = [(e.outcome, e.duration) for e in events if isinstance(e, BreakerCallFinished)]
    assert finished == [("success", 0.25)] * 4 + [("failure", 0.25)]


# -- the load lock -------------------------------------------------------------------------------


def test_the_load_lock_is_guarded_by_the_same_breaker(clock: ManualClock) -> None:
    flaky = LockingFlaky(clock)
    guarded = GuardedBackend(flaky, breaker=backend_breaker("flaky", clock=clock))
    lock = guarded.load_lock
    assert isinstance(lock, GuardedLoadLock)
    assert isinstance(lock, LoadLock)
    assert (lock.inner, lock.ttl, lock.breaker) == (flaky.load_lock, 10.0, guarded.breaker)
    assert repr(lock).startswith("GuardedLoadLock(<")
    assert GuardedBackend(Flaky(clock)).load_lock is None  # nothing to guard
    assert lock.acquire("ns", "k", "me") == (0.0, None)
    assert lock.acquire("ns", "k", "you") == (5.0, None)
    assert lock.park("ns", "k", 0.1) is False
    assert lock.release("ns", "k", "me") == 0
    assert guarded.breaker.stats().calls == 4
    flaky.down = True
    for _ in range(4):  # 4 failures after 4 good calls: half of the window
        with pytest.raises(BackendUnavailable, match="flaky is down"):
            lock.acquire("ns", "k", "me")
    assert guarded.breaker.state is State.OPEN
    for call, what in (
        (lambda: lock.acquire("ns", "k", "me"), "load lock"),
        (lambda: lock.park("ns", "k", 1.0), "load lock"),
        (lambda: lock.release("ns", "k", "me"), "load lock"),
        (lambda: guarded.get("ns", "k"), "flaky backend"),  # the backend: the same breaker
    ):
        with pytest.raises(BackendUnavailable) as raised:
            call()
        assert isinstance(raised.value.__cause__, CircuitOpen)
        assert str(raised.value).startswith(
            f"{what} not called: circuit breaker 'cache-backend:flaky' is open"
        )
    assert flaky.calls == 8


async def test_the_async_load_lock(clock: ManualClock) -> None:
    flaky = LockingFlaky(clock)
    guarded = GuardedBackend(flaky, breaker=backend_breaker("flaky", clock=clock))
    lock = guarded.load_lock
    assert lock is not None
    assert await lock.aacquire("ns", "k", "me") == (0.0, None)
    assert await lock.apark("ns", "k", 0.1) is False
    assert await lock.arelease("ns", "k", "me") == 0
    flaky.down = True
    fail(guarded, 5)
    for call in (
        lock.aacquire("ns", "k", "me"),
        lock.apark("ns", "k", 1.0),
        lock.arelease("ns", "k", "me"),
    ):
        with pytest.raises(BackendUnavailable, match="load lock not called") as raised:
            await call
        assert isinstance(raised.value.__cause__, CircuitOpen)
    assert flaky.calls == 3 + 3  # 3 failures after 3 good calls opened it


async def test_a_cache_uses_the_guarded_lock(clock: ManualClock, recorder: Recorder) -> None:
    flaky = LockingFlaky(clock)
    guarded = GuardedBackend(flaky, breaker=backend_breaker("flaky", clock=clock))
    cache = Cache("c", backend=guarded, clock=clock, listeners=[recorder], early_refresh_beta=0)
    assert cache.load_lock is guarded.load_lock
    assert await cache.get_or_load("k", lambda: asyncio.sleep(0, "v")) == "v"
    assert flaky.calls == 4  # read, lock (the flaky lock reads nothing), write, unlock
    flaky.down = True
    clock.advance(4000)
    for _ in range(5):
        assert await cache.get_or_load("k", lambda: asyncio.sleep(0, "w")) == "w"
    assert guarded.breaker.state is State.OPEN
    calls = flaky.calls
    assert await cache.get_or_load("k", lambda: asyncio.sleep(0, "x")) == "x"
    assert flaky.calls == calls  # neither the read, the lock nor the write went out
    operations = [f.operation for f in recorder.of(BackendFailure)][-3:]
    assert operations == ["get", "lock", "set"]


# -- under a Cache --------------------------------------------------------------------------------


async def test_a_cache_fails_open_and_says_the_breaker_is_open(
    flaky: Flaky, clock: ManualClock, recorder: Recorder
) -> None:
    guarded = GuardedBackend(flaky, breaker=backend_breaker("flaky", clock=clock))
    cache = Cache("c", backend=guarded, clock=clock, listeners=[recorder], early_refresh_beta=0)
    loads: list[str] = []

    async def load() -> str:
        loads.append("x")
        return "fresh"

    assert await cache.get_or_load("k", load) == "fresh"
    flaky.down = True
    clock.advance(4000)  # past the TTL: every call now reads (and fails) again
    for _ in range(10):
        assert await cache.get_or_load("k", load) == "fresh"
    assert cache.sync.get_or_load("k", lambda: "sync") == "sync"
    assert len(loads) == 11
    # A get and a set, then get, set, get failed: 3 of the last 5 calls, the breaker opened.
    assert flaky.calls == 2 + 3
    failures = recorder.of(BackendFailure)
    assert [f.outcome for f in failures[:2]] == ["miss", "not_cached"]
    assert failures[0].error == "ConnectionRefusedError: [Errno 111] refused"
    assert failures[-1].error.startswith(
        "CircuitOpen: circuit breaker 'cache-backend:flaky' is open; retry after"
    )
    flaky.down = False
    clock.advance(5.0)
    assert await cache.get_or_load("k", load) == "fresh"  # the probe: a miss, stored
    assert guarded.breaker.state is State.CLOSED
    assert await cache.get_or_load("k", load) == "fresh"
    assert len(loads) == 12  # a hit again


# -- real Redis -----------------------------------------------------------------------------------


@pytest.fixture
async def redis_guarded(redis_url: str, redis_prefix: str) -> AsyncIterator[GuardedBackend]:
    guarded = GuardedBackend(RedisBackend.from_url(redis_url, prefix=redis_prefix))
    yield guarded
    await guarded.aclose()


@pytest.mark.redis
async def test_on_redis(redis_guarded: GuardedBackend) -> None:
    assert isinstance(redis_guarded.inner, RedisBackend)
    assert redis_guarded.kind == "redis"
    assert redis_guarded.breaker.name == "cache-backend:redis"
    assert isinstance(redis_guarded.load_lock, GuardedLoadLock)
    assert redis_guarded.load_lock.inner is redis_guarded.inner.load_lock
    cache = Cache("guarded", backend=redis_guarded)
    assert cache.load_lock is redis_guarded.load_lock
    assert await cache.get_or_load("k", lambda: asyncio.sleep(0, "v")) == "v"
    assert redis_guarded.breaker.stats().calls == 4  # read, lock and read again, write, unlock
    assert await cache.get("k") == "v"
    assert cache.sync.get("k") == "v"
    assert redis_guarded.breaker.stats().failures == 0


@pytest.mark.redis
async def test_a_refused_redis_opens_it_and_calls_fail_fast() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    guarded = GuardedBackend(
        RedisBackend.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2)
    )
    try:
        for _ in range(5):
            with pytest.raises(BackendUnavailable) as raised:
                await guarded.aget("ns", "k")
            assert not isinstance(raised.value.__cause__, CircuitOpen)
        start = time.perf_counter()
        for _ in range(100):
            with pytest.raises(BackendUnavailable):
                await guarded.aget("ns", "k")
            with pytest.raises(BackendUnavailable):
                guarded.get("ns", "k")
        assert time.perf_counter() - start < 0.5  # 200 calls, none touching the network
    finally:
        await guarded.aclose()


async def test_the_response_cache_guards_a_remote_backend_too() -> None:
    import httpx

    from sysdesign_kit.cache import RedisBackend, ResponseCacheMiddleware
    from sysdesign_kit.cache.memory import MemoryBackend as Memory

    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis_backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
    calls = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal calls
        calls += 1
        headers = [(b"cache-control", b"max-age=60")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"fresh"})

    cache = ResponseCacheMiddleware(app, backend=redis_backend)
    assert isinstance(cache.backend, GuardedBackend)
    assert cache.backend.inner is redis_backend
    transport = httpx.ASGITransport(app=cache)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = [await client.get("/p") for _ in range(8)]
    assert [a.text for a in answers] == ["fresh"] * 8  # served by the app: failed open
    assert calls == 8
    assert cache.backend.breaker.state is State.OPEN  # later calls skip the dead server
    bare = ResponseCacheMiddleware(app, backend=redis_backend, guard=False)
    assert bare.backend is redis_backend
    assert isinstance(ResponseCacheMiddleware(app, backend=Memory()).backend, Memory)
    await redis_backend.aclose()
