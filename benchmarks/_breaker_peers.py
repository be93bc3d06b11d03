"""The contenders of ``benchmarks/breaker.py``, each a decorated no-op function.

Closed (the success path) and open (the fail-fast path), sync and async:

- ours: ``@CircuitBreaker(...)`` with its default window (the last 100 calls), with a
  ``TimeWindow`` (60 s in 10 buckets: a clock read per call), and with one no-op listener
  (every call timed and published);
- pybreaker (sync only: its async support needs tornado), circuitbreaker (sync and async),
  aiobreaker (async), purgatory (sync and async factories, in memory);
- the floors: a decorator written by hand that checks a closed flag, calls, and counts the
  call, once bare and once with both steps under a ``threading.Lock``; open, it raises a
  fresh exception with no message.

Every breaker is configured so the benchmark never changes its state: closed ones never see
a failure, open ones stay open for an hour.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker

from sysdesign_kit.breaker import CircuitBreaker, TimeWindow
from sysdesign_kit.errors import CircuitOpen

OURS = "ours"
OURS_TIME = "ours, TimeWindow(60 s, 10 buckets)"
OURS_LISTENED = "ours, one no-op listener"
FLOOR = "floor: closed check + counter"
FLOOR_LOCK = "floor with threading.Lock"
HOUR = 3600.0

SyncFn = Callable[[], object]
AsyncFn = Callable[[], Awaitable[object]]


def bare() -> int:
    return 1


async def abare() -> int:
    return 1


class Down(Exception):
    """What the failing function raises to trip a breaker."""


def down() -> int:
    raise Down


async def adown() -> int:
    raise Down


class FloorOpen(Exception):
    """The floor's rejection."""


class _Floor:
    __slots__ = ("calls", "closed", "lock")

    def __init__(self, closed: bool) -> None:
        self.closed = closed
        self.calls = 0
        self.lock = threading.Lock()


def floor(func: Callable[[], Any], *, lock: bool, closed: bool = True) -> SyncFn:
    """The least a sync breaker decorator can do."""
    state = _Floor(closed)
    guard = state.lock

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not state.closed:
            raise FloorOpen
        result = func(*args, **kwargs)
        state.calls += 1
        return result

    def locked(*args: Any, **kwargs: Any) -> Any:
        with guard:
            if not state.closed:
                raise FloorOpen
        result = func(*args, **kwargs)
        with guard:
            state.calls += 1
        return result

    return locked if lock else wrapper


def afloor(func: Callable[[], Awaitable[Any]], *, lock: bool, closed: bool = True) -> AsyncFn:
    """The least an async breaker decorator can do."""
    state = _Floor(closed)
    guard = state.lock

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not state.closed:
            raise FloorOpen
        result = await func(*args, **kwargs)
        state.calls += 1
        return result

    async def locked(*args: Any, **kwargs: Any) -> Any:
        with guard:
            if not state.closed:
                raise FloorOpen
        result = await func(*args, **kwargs)
        with guard:
            state.calls += 1
        return result

    return locked if lock else wrapper


def _ours(**settings: Any) -> CircuitBreaker:
    return CircuitBreaker("bench", open_for=HOUR, **settings)


def _ours_open() -> CircuitBreaker:
    breaker = CircuitBreaker("bench", minimum_calls=1, open_for=HOUR)
    breaker.on_failure(breaker.acquire())
    return breaker


def _trip_sync(func: SyncFn) -> SyncFn:
    with contextlib.suppress(Down):
        func()
    return func


def sync_closed() -> dict[str, SyncFn]:
    """Closed breakers around ``bare`` (plus the bare function itself)."""
    purgatory_sync = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=HOUR)
    return {
        "bare call": bare,
        OURS: _ours()(bare),
        OURS_TIME: _ours(window=TimeWindow(60, buckets=10))(bare),
        OURS_LISTENED: _ours(listeners=[lambda event: None])(bare),
        FLOOR: floor(bare, lock=False),
        FLOOR_LOCK: floor(bare, lock=True),
        "pybreaker": pybreaker.CircuitBreaker(fail_max=5, reset_timeout=HOUR)(bare),
        "circuitbreaker": circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)(
            bare
        ),
        "purgatory (sync)": purgatory_sync("bench")(bare),
    }


def async_closed() -> dict[str, AsyncFn]:
    """Closed async breakers around ``abare`` (plus the bare coroutine function)."""
    purgatory_async = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=HOUR)
    aio = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=datetime.timedelta(hours=1))
    return {
        "bare call": abare,
        OURS: _ours()(abare),
        OURS_TIME: _ours(window=TimeWindow(60, buckets=10))(abare),
        OURS_LISTENED: _ours(listeners=[lambda event: None])(abare),
        FLOOR: afloor(abare, lock=False),
        FLOOR_LOCK: afloor(abare, lock=True),
        "circuitbreaker": circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)(
            abare
        ),
        "aiobreaker": aio(abare),
        "purgatory": purgatory_async("bench")(abare),
    }


def sync_open() -> dict[str, tuple[SyncFn, type[BaseException]]]:
    """Open breakers (and what each raises)."""
    pyb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=HOUR)
    pyb.open()
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HOUR)
    purgatory_sync = purgatory.SyncCircuitBreakerFactory(default_threshold=1, default_ttl=HOUR)
    return {
        OURS: (_ours_open()(bare), CircuitOpen),
        FLOOR: (floor(bare, lock=False, closed=False), FloorOpen),
        "pybreaker": (pyb(bare), pybreaker.CircuitBreakerError),
        "circuitbreaker": (_trip_sync(cb(down)), circuitbreaker.CircuitBreakerError),
        "purgatory (sync)": (_trip_sync(purgatory_sync("open")(down)), Exception),
    }


async def async_open() -> dict[str, tuple[AsyncFn, type[BaseException]]]:
    """Open async breakers (and what each raises); run on the benchmark's loop."""
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HOUR)
    aio = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=datetime.timedelta(hours=1))
    aio.open()
    purgatory_async = purgatory.AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=HOUR)
    tripped_cb = cb(adown)
    tripped_purgatory = purgatory_async("open")(adown)
    for func in (tripped_cb, tripped_purgatory):
        with contextlib.suppress(Down):
            await func()
    return {
        OURS: (_ours_open()(abare), CircuitOpen),
        FLOOR: (afloor(abare, lock=False, closed=False), FloorOpen),
        "circuitbreaker": (tripped_cb, circuitbreaker.CircuitBreakerError),
        "aiobreaker": (aio(abare), aiobreaker.CircuitBreakerError),
        "purgatory": (tripped_purgatory, Exception),
    }
