from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock, ManualClock
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError, InvalidCost, RateLimited
from sysdesign_kit.ratelimit import MemoryBackend, RateLimitDecision, RateLimiter, rate_limited


def limiter(clock: Clock, rate: str = "2/second", **kw: Any) -> RateLimiter:
    return RateLimiter(rate, name="calls", clock=clock, **kw)


def test_sync_raises_with_retry_after(clock: ManualClock) -> None:
    lim = limiter(clock)

    @rate_limited(lim)
    def work(x: int) -> int:
        return x * 2

    assert [work(1), work(2)] == [2, 4]
    with pytest.raises(RateLimited) as caught:
        work(3)
    assert caught.value.retry_after == pytest.approx(0.5)
    assert isinstance(caught.value.decision, RateLimitDecision)
    assert caught.value.decision.policy == "calls"
    assert work.__name__ == "work"
    clock.advance(0.5)
    assert work(4) == 8


async def test_async_raises_then_recovers(clock: ManualClock) -> None:
    lim = limiter(clock, "1/minute")

    @lim.limit()
    async def work() -> str:
        return "done"

    assert await work() == "done"
    with pytest.raises(RateLimited) as caught:
        await work()
    assert caught.value.retry_after == pytest.approx(60)
    clock.advance(60)
    assert await work() == "done"


async def test_async_wait_sleeps_on_the_clock(clock: ManualClock) -> None:
    lim = limiter(clock, "1/second")
    calls: list[float] = []

    @rate_limited(lim, wait=True)
    async def work() -> None:
        calls.append(clock.monotonic())

    await work()
    task = asyncio.create_task(work())
    for _ in range(5):  # let the task run up to its sleep
        await asyncio.sleep(0)
    assert clock.pending_sleepers == 1
    assert calls == [1000.0]
    clock.advance(1.0)
    await task
    assert calls == [1000.0, 1001.0]


def test_sync_wait_on_a_manual_clock_advances_it(clock: ManualClock) -> None:
    lim = limiter(clock, "1/second")

    @lim.limit(wait=True)
    def work() -> float:
        return clock.monotonic()

    assert [work(), work(), work()] == [1000.0, 1001.0, 1002.0]


@pytest.mark.parametrize("is_async", [False, True])
async def test_max_wait_raises_without_waiting(clock: ManualClock, is_async: bool) -> None:
    lim = limiter(clock, "1/10s")

    if is_async:

        @rate_limited(lim, wait=True, max_wait=5)
        async def work() -> str:
            return "ok"

        assert await work() == "ok"
        with pytest.raises(RateLimited):
            await work()
    else:

        @rate_limited(lim, wait=True, max_wait=5)
        def sync_work() -> str:
            return "ok"

        assert sync_work() == "ok"
        with pytest.raises(RateLimited):
            sync_work()
    assert clock.monotonic() == 1000.0


def test_max_wait_allows_what_fits(clock: ManualClock) -> None:
    lim = limiter(clock, "1/second")

    @rate_limited(lim, wait=True, max_wait=1.0)
    def work() -> str:
        return "ok"

    assert [work(), work()] == ["ok", "ok"]
    assert clock.monotonic() == 1001.0


def test_keys_and_costs_from_arguments(clock: ManualClock) -> None:
    lim = limiter(clock, "3/minute")

    @rate_limited(lim, key=lambda user, **_: f"user:{user}", cost=lambda user, n=1: n)
    def fetch(user: str, n: int = 1) -> str:
        return user

    assert fetch("a", n=3) == "a"
    with pytest.raises(RateLimited):
        fetch("a")
    assert fetch("b") == "b"
    with pytest.raises(InvalidCost):
        fetch("c", n=4)


def test_default_key_is_per_function_and_constant_key_shares(clock: ManualClock) -> None:
    lim = limiter(clock, "1/minute")

    @rate_limited(lim)
    def one() -> int:
        return 1

    @rate_limited(lim)
    def two() -> int:
        return 2

    @rate_limited(lim, key="shared")
    def three() -> int:
        return 3

    @rate_limited(lim, key="shared")
    def four() -> int:
        return 4

    assert (one(), two(), three()) == (1, 2, 3)
    with pytest.raises(RateLimited):
        four()


def test_shadow_limiter_never_raises(clock: ManualClock) -> None:
    lim = limiter(clock, "1/minute", shadow=True)

    @rate_limited(lim)
    def work() -> int:
        return 1

    assert [work() for _ in range(3)] == [1, 1, 1]


class _CustomClock:
    def monotonic(self) -> float:
        return 0.0

    def monotonic_ns(self) -> int:
        return 0

    def time(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


def test_sync_wait_needs_a_known_clock() -> None:
    lim = RateLimiter("1/s", clock=_CustomClock(), backend=MemoryBackend(clock=_CustomClock()))
    with pytest.raises(ConfigurationError, match="SystemClock or ManualClock"):

        @rate_limited(lim, wait=True)
        def work() -> None:
            return None

    @rate_limited(lim, wait=True)
    async def fine() -> None:
        return None

    rate_limited(RateLimiter("1/s", clock=SYSTEM_CLOCK), wait=True)(lambda: None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_wait": -1}, "max_wait"), ({"key": 42}, "key must be")],
)
def test_bad_arguments(clock: ManualClock, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        rate_limited(limiter(clock), **kwargs)(lambda: None)


class _DownBound:
    """A bound limit whose store is unreachable (what a Redis outage looks like)."""

    algorithm = "gcra"
    owner: Any = None

    def __init__(self, rate: Any, name: str) -> None:
        self.rate, self.name = rate, name

    def decide(self, key: str, cost: int) -> Any:
        raise BackendUnavailable("connection refused")


class _DownBackend:
    local = False
    kind = "down"

    def bind(self, algorithm: str, rate: Any, name: str) -> Any:
        return _DownBound(rate, name)


def test_fail_closed_backend_outage_raises_rate_limited(clock: ManualClock) -> None:
    lim = RateLimiter("5/s", backend=_DownBackend(), fail_open=False, clock=clock)  # type: ignore[arg-type]

    @rate_limited(lim)
    def work() -> None:
        return None

    with pytest.raises(RateLimited) as caught:
        work()
    assert caught.value.decision.degraded  # type: ignore[attr-defined]
    assert caught.value.retry_after == pytest.approx(0.2)
