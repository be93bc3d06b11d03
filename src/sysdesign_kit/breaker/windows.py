"""Sliding windows of recent calls: the last N calls, or the calls of the last N seconds.

``CountWindow(size)`` and ``TimeWindow(seconds, buckets)`` are frozen settings. Each CLOSED
period of a breaker gets a fresh *recorder* from ``window.recorder(clock)``; the breaker adds
every finished call to it and asks it for `Totals` when a failed or slow call may trip the
breaker.

An outcome is a code: bit 0 set for a failed call, bit 1 for a slow one (``OK``, ``FAILED``,
``SLOW``, ``SLOW_FAILED``).

No recorder takes a lock. Every update is one C-level operation that runs from start to end
while holding the GIL (``deque.append`` with a ``maxlen``, ``next()`` on an
``itertools.count``, ``dict.setdefault`` and ``dict.pop`` with int keys), so threads and
tasks can record at the same time without losing a call, and the success path costs one
call (`Recorder.ok`). Totals are read from a snapshot taken the same way.

A time window keeps one bucket per ``seconds / buckets`` of monotonic time; a call counts
until its bucket leaves the window, that is for between ``seconds - width`` and ``seconds``
after it happened (``width = seconds / buckets``). Bucket boundaries are whole multiples of
the width on the clock's nanosecond reading, so a `ManualClock` places calls exactly.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from sysdesign_kit.breaker.state import Totals
from sysdesign_kit.clock import Clock
from sysdesign_kit.errors import ConfigurationError

__all__ = [
    "FAILED",
    "OK",
    "SLOW",
    "SLOW_FAILED",
    "CountWindow",
    "Recorder",
    "TimeWindow",
    "Window",
]

OK = 0
FAILED = 1
SLOW = 2
SLOW_FAILED = 3

_MAX_SIZE = 1_000_000
_MIN_WIDTH_NS = 1_000_000  # 1 ms: finer buckets only cost memory and time
_MAX_SECONDS = 366 * 86_400.0


class Recorder(Protocol):
    """What a breaker needs from a window during one CLOSED period."""

    #: Record one successful, fast call now (the hot path: a single call, no arguments).
    ok: Callable[[], object]

    def add(self, code: int, now_ns: int) -> None:
        """Record a call with outcome ``code`` that finished at ``now_ns``."""
        ...

    def totals(self, now_ns: int) -> Totals:
        """Calls, failures and slow calls in the window as of ``now_ns``."""
        ...


@dataclass(frozen=True, slots=True)
class CountWindow:
    """The last ``size`` calls (default 100). Needs no clock.

    Raises:
        ConfigurationError: ``size`` is not an int in 1..1,000,000.
    """

    size: int = 100

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_SIZE:
            raise ConfigurationError(
                f"CountWindow size must be an int in 1..{_MAX_SIZE:,} calls, got {size!r}"
            )

    #: Whether recording a call needs the time.
    needs_time = False

    def recorder(self, clock: Clock) -> CountRecorder:
        """A fresh, empty recorder."""
        return CountRecorder(self.size)

    def __str__(self) -> str:
        return f"last {self.size} calls"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The calls of the last ``seconds`` (default 60), in ``buckets`` buckets (default 10).

    Raises:
        ConfigurationError: ``seconds`` not positive and at most a year, ``buckets`` not an
            int >= 1, or buckets narrower than 1 ms.
    """

    seconds: float = 60.0
    buckets: int = 10

    def __post_init__(self) -> None:
        seconds, buckets = self.seconds, self.buckets
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigurationError(f"TimeWindow seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= _MAX_SECONDS:
            raise ConfigurationError(
                f"TimeWindow seconds must be > 0 and at most a year, got {seconds!r}"
            )
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ConfigurationError(f"TimeWindow buckets must be an int >= 1, got {buckets!r}")
        if self.width_ns < _MIN_WIDTH_NS:
            raise ConfigurationError(
                f"TimeWindow({seconds!r}, buckets={buckets}) makes buckets narrower than 1 ms; "
                "use fewer buckets"
            )

    #: Whether recording a call needs the time.
    needs_time = True

    @property
    def width_ns(self) -> int:
        """Nanoseconds covered by one bucket."""
        return math.floor(self.seconds * 1_000_000_000 / self.buckets)

    def recorder(self, clock: Clock) -> TimeRecorder:
        """A fresh, empty recorder reading ``clock``."""
        return TimeRecorder(self.width_ns, self.buckets, clock)

    def __str__(self) -> str:
        return f"last {self.seconds:g} s in {self.buckets} buckets"


#: The window kinds a breaker accepts.
Window = CountWindow | TimeWindow


class CountRecorder:
    """The last ``size`` outcome codes in a ring (a ``deque`` with ``maxlen``)."""

    __slots__ = ("_ring", "ok")

    def __init__(self, size: int) -> None:
        self._ring: deque[int] = deque(maxlen=size)
        self.ok: Callable[[], object] = partial(self._ring.append, OK)

    def add(self, code: int, now_ns: int) -> None:
        """Record ``code`` (the time is not needed)."""
        self._ring.append(code)

    def totals(self, now_ns: int) -> Totals:
        """Counts over a snapshot of the ring."""
        snapshot = tuple(self._ring)
        failed, slow, both = snapshot.count(FAILED), snapshot.count(SLOW), snapshot.count(3)
        return Totals(len(snapshot), failed + both, slow + both)


class TimeRecorder:
    """One bucket per width of time: four counters (one per outcome code) keyed by the
    bucket's number (``now_ns // width_ns``); buckets that left the window are dropped
    whenever a new one starts."""

    __slots__ = ("_buckets", "_latest", "_now_ns", "_span", "_width", "ok")

    def __init__(self, width_ns: int, buckets: int, clock: Clock) -> None:
        self._width = width_ns
        self._span = buckets
        self._now_ns = clock.monotonic_ns
        self._buckets: dict[int, tuple[itertools.count[int], ...]] = {}
        # (start_ns, end_ns, success counter) of the newest bucket, read and replaced as one
        # tuple so the success path needs neither a division nor a dict lookup.
        self._latest: tuple[int, int, itertools.count[int]] = (0, 0, itertools.count())
        self.ok: Callable[[], object] = self._ok

    def _ok(self) -> None:
        now = self._now_ns()
        start, end, successes = self._latest
        if start <= now < end:
            next(successes)
        else:
            self.add(OK, now)

    def add(self, code: int, now_ns: int) -> None:
        """Record ``code`` in the bucket of ``now_ns``."""
        number = now_ns // self._width
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._start(number)
        next(bucket[code])

    def totals(self, now_ns: int) -> Totals:
        """Sum of the buckets still inside the window at ``now_ns``."""
        oldest = now_ns // self._width - self._span
        counts = [0, 0, 0, 0]
        for number, bucket in list(self._buckets.items()):
            if number > oldest:
                for code in range(4):
                    counts[code] += _read(bucket[code])
        ok, failed, slow, both = counts
        return Totals(ok + failed + slow + both, failed + both, slow + both)

    def _start(self, number: int) -> tuple[itertools.count[int], ...]:
        buckets = self._buckets
        # setdefault is atomic: threads starting the same bucket all get the one stored.
        bucket = buckets.setdefault(number, tuple(itertools.count() for _ in range(4)))
        start = number * self._width
        # Two threads starting different buckets may leave the older one as _latest; that
        # only sends successes through add() until the next bucket starts.
        if start > self._latest[0]:
            self._latest = (start, start + self._width, bucket[0])
        oldest = number - self._span
        for old in tuple(buckets):  # a C-level copy: the dict may grow meanwhile
            if old <= oldest:
                buckets.pop(old, None)
        return bucket


def _read(counter: itertools.count[int]) -> int:
    # itertools.count is the one integer counter whose increment is a single C call; its
    # repr ("count(7)") is the way to read it without moving it.
    return int(repr(counter)[6:-1])
