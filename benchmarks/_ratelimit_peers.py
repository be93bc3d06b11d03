"""The peers of the rate-limit benchmark, each reduced to "hit this key" callables.

Families are compared like for like: our token bucket (GCRA) against `limits`' moving
window and pyrate-limiter's TokenBucket, our sliding window counter against `limits`'
sliding window counter and pyrate's sliding log, our fixed window against both fixed
windows. The hand-written floor is the least a Python token bucket can cost: a dict and
`time.monotonic`, no validation, no result object.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
from pyrate_limiter import (
    BucketFactory,
    Duration,
    FixedWindow,
    InMemoryBucket,
    Limiter,
    MonotonicClock,
    RateItem,
    SlidingWindowLog,
    StateBucket,
    TokenBucket,
)
from pyrate_limiter import Rate as PyrateRate

from sysdesign_kit.ratelimit.backend import AlgorithmName

__all__ = [
    "FAMILIES",
    "LIMIT_PER_HOUR",
    "Family",
    "floor_gcra",
    "limits_aio_memory",
    "limits_memory",
    "pyrate_per_key",
]

#: One rate for every speed case: large enough that nothing is ever denied.
LIMIT_PER_HOUR = 1_000_000
RATE_TEXT = f"{LIMIT_PER_HOUR}/hour"
LIMITS_ITEM = limits.parse(f"{LIMIT_PER_HOUR} per hour")


@dataclass(frozen=True, slots=True)
class Family:
    """One of our algorithms with the peer strategies of the same family."""

    ours: AlgorithmName
    limits_name: str
    limits_sync: type[limits.strategies.RateLimiter]
    limits_async: type[limits.aio.strategies.RateLimiter]
    pyrate_name: str
    pyrate_bucket: Callable[[], Any]


def _pyrate_rates() -> list[PyrateRate]:
    return [PyrateRate(LIMIT_PER_HOUR, Duration.HOUR)]


FAMILIES = (
    Family(
        "token_bucket",
        "limits MovingWindow",
        limits.strategies.MovingWindowRateLimiter,
        limits.aio.strategies.MovingWindowRateLimiter,
        "pyrate StateBucket(TokenBucket)",
        lambda: StateBucket(_pyrate_rates(), algorithm=TokenBucket()),
    ),
    Family(
        "sliding_window",
        "limits SlidingWindowCounter",
        limits.strategies.SlidingWindowCounterRateLimiter,
        limits.aio.strategies.SlidingWindowCounterRateLimiter,
        "pyrate InMemoryBucket(SlidingWindowLog)",
        lambda: InMemoryBucket(_pyrate_rates(), algorithm=SlidingWindowLog()),
    ),
    Family(
        "fixed_window",
        "limits FixedWindow",
        limits.strategies.FixedWindowRateLimiter,
        limits.aio.strategies.FixedWindowRateLimiter,
        "pyrate InMemoryBucket(FixedWindow)",
        lambda: InMemoryBucket(_pyrate_rates(), algorithm=FixedWindow()),
    ),
)


def floor_gcra(interval: float = 3600.0 / LIMIT_PER_HOUR, burst: int = LIMIT_PER_HOUR) -> Any:
    """The hand-written floor: a token bucket as one float per key in a plain dict."""
    tats: dict[str, float] = {}
    tau = interval * burst
    now_of = time.monotonic

    def hit(key: str) -> bool:
        now = now_of()
        tat = tats.get(key, now)
        if tat < now:
            tat = now
        tat += interval
        if tat - tau > now:
            return False
        tats[key] = tat
        return True

    hit.tats = tats  # type: ignore[attr-defined]
    return hit


class LimitsMemory:
    """`limits` in memory: a storage and one strategy, with its sweeper thread at hand."""

    def __init__(self, strategy: type[limits.strategies.RateLimiter]) -> None:
        self.storage = limits.storage.MemoryStorage()
        self.limiter = strategy(self.storage)
        self.hit: Callable[[str], bool] = partial(self.limiter.hit, LIMITS_ITEM)

    def settle(self) -> None:
        """Wait for the expiry sweep its last hit scheduled (it holds the GIL while it
        scans every key, so it must not run during another contender's repeat)."""
        self.storage.timer.join()

    def close(self) -> None:
        self.storage.reset()
        self.settle()


def limits_memory(strategy: type[limits.strategies.RateLimiter]) -> LimitsMemory:
    """A fresh `limits` MemoryStorage with ``strategy`` over it."""
    return LimitsMemory(strategy)


class LimitsAioMemory:
    """`limits.aio` in memory; its sweeper is an asyncio task."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, strategy: type[limits.aio.strategies.RateLimiter]
    ) -> None:
        self.loop = loop
        self.storage = limits.aio.storage.MemoryStorage()
        self.limiter = strategy(self.storage)
        self.hit: Callable[[str], Awaitable[bool]] = partial(self.limiter.hit, LIMITS_ITEM)

    def settle(self) -> None:
        """Let the sweep task its hits scheduled finish before anyone else runs."""

        async def wait() -> None:
            timer = self.storage.timer
            if timer is not None and not timer.done():
                await timer

        self.loop.run_until_complete(wait())

    def close(self) -> None:
        self.loop.run_until_complete(self.storage.reset())
        self.settle()


def limits_aio_memory(
    loop: asyncio.AbstractEventLoop, strategy: type[limits.aio.strategies.RateLimiter]
) -> LimitsAioMemory:
    """A fresh `limits.aio` MemoryStorage with ``strategy`` over it."""
    return LimitsAioMemory(loop, strategy)


class _PerKeyBuckets(BucketFactory):
    """One pyrate bucket per key: pyrate's way of limiting each key on its own."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._buckets: dict[str, Any] = {}
        self._clock = MonotonicClock()

    def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, self._clock.now(), weight=weight)

    def get(self, item: RateItem) -> Any:
        bucket = self._buckets.get(item.name)
        if bucket is None:
            bucket = self._buckets[item.name] = self._make()
            self.schedule_leak(bucket)
        return bucket


def pyrate_per_key(make_bucket: Callable[[], Any]) -> tuple[Callable[[str], Any], Limiter]:
    """A pyrate `Limiter` with one bucket per key, and its non-blocking ``try_acquire``."""
    limiter = Limiter(_PerKeyBuckets(make_bucket))
    return partial(limiter.try_acquire, blocking=False), limiter
