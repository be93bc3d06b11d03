"""Clocks: every time-dependent part of the kit takes ``clock=`` so tests never wait.

``SystemClock`` reads the real monotonic and wall clocks. ``ManualClock`` only moves when told
to; ``advance()`` also wakes any ``await clock.sleep(...)`` whose deadline has passed, so async
code that sleeps (a limiter that waits, a retry backoff) runs instantly under test.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Where components read time from.

    ``monotonic`` measures intervals (never goes back); ``time`` is wall-clock seconds since
    the epoch, for anything shown to people or shared between machines.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def monotonic_ns(self) -> int:
        """Nanoseconds on the same clock as `monotonic` (cheaper for integer algorithms)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clocks of this process."""

    __slots__ = ()

    # Bound at class level so a call costs one attribute lookup, not a wrapper frame.
    monotonic = staticmethod(time.monotonic)
    monotonic_ns = staticmethod(time.monotonic_ns)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running event loop."""
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when ``advance`` or ``set`` is called.

    Args:
        start: the initial monotonic reading in seconds.
        wall_offset: added to the monotonic reading to give ``time()``.
    """

    def __init__(self, start: float = 1_000.0, *, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._wall_offset = float(wall_offset)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        """The current manual reading."""
        return self._now

    def monotonic_ns(self) -> int:
        """The manual reading in whole nanoseconds."""
        return round(self._now * 1_000_000_000)

    def time(self) -> float:
        """The manual reading shifted to the epoch."""
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced past ``now + seconds``."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake the sleepers whose deadline has come."""
        if seconds < 0:
            raise ValueError("a ManualClock never goes backwards")
        self.set(self._now + seconds)

    def set(self, now: float) -> None:
        """Jump to ``now`` (not earlier than the current reading)."""
        if now < self._now:
            raise ValueError("a ManualClock never goes backwards")
        self._now = float(now)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def pending_sleepers(self) -> int:
        """How many tasks are waiting in ``sleep``."""
        return sum(1 for _, _, f in self._sleepers if not f.done())


class VirtualClock(ManualClock):
    """A `ManualClock` whose ``sleep`` moves it: virtual time, for simulations and demos.

    Sleeping advances the clock by the time slept (waking every earlier sleeper on the way),
    so code that waits (retry backoff, breaker open times) runs instantly while every
    reading stays exact. With concurrent sleepers, each one moves time on by its own wait.
    """

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds``, then yield to the event loop once."""
        if seconds > 0:
            self.advance(seconds)
        await asyncio.sleep(0)
