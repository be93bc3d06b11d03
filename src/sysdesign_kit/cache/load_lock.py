"""The contract of a load lock: one loader per key across processes, waiters woken when done.

Single-flight inside a process (`flight`) makes N concurrent callers of a cold key share one
load. With a shared backend, every process would still load once; a load lock narrows that
to one load for the whole cluster. The `Cache` uses it on the miss path only::

    acquire(key) == (0, None)   -> this process loads, stores, then release(key) wakes waiters
    acquire(key) == (0, bytes)  -> it holds the lock, but another process stored the entry
                                   since this one missed: check those bytes before loading
    acquire(key) == (t, None)   -> another process is loading: park(key, t), then read the
                                   backend again; nothing there (its load failed, it died and
                                   the lock expired) -> try to acquire again

A holder that dies never releases: its lock expires after ``ttl`` and the waiters, whose
``park`` is bounded by the time the lock had left, try again and one of them loads. A load
that runs longer than ``ttl`` may overlap with one other load; pick ``ttl`` above the
slowest load you expect.

`sysdesign_kit.cache.redis_lock.RedisLoadLock` implements it over Redis (a backend's
``load_lock``); a backend that is only in this process needs none.
"""

from __future__ import annotations

import secrets
from typing import Protocol, runtime_checkable

__all__ = ["LoadLock", "Turn", "new_token"]

#: What `LoadLock.acquire` answers: (0.0, the entry's bytes or None) when the caller holds
#: the lock, else (seconds the holder has left, None).
Turn = tuple[float, bytes | None]


def new_token() -> str:
    """A token naming one holder of a load lock (unique across processes)."""
    return secrets.token_hex(8)


@runtime_checkable
class LoadLock(Protocol):
    """Grants one caller at a time the right to load a key, and wakes those who waited.

    Attributes:
        ttl: seconds a lock lives if its holder never releases it.

    Every method raises `sysdesign_kit.errors.BackendUnavailable` when the lock's store
    cannot answer; the cache then loads without it (fail open).
    """

    ttl: float

    def acquire(self, namespace: str, key: str, token: str) -> Turn:
        """``(0.0, bytes)`` if ``token`` now holds the lock, with the backend's bytes for
        the key read in the same step (None if none); else, counted as a waiter,
        ``(seconds the current holder has left, None)``."""
        ...

    def park(self, namespace: str, key: str, wait: float) -> bool:
        """Block until a holder releases the lock or ``wait`` seconds pass; whether woken."""
        ...

    def release(self, namespace: str, key: str, token: str) -> int:
        """Drop the lock if ``token`` still holds it, and wake every waiter; how many."""
        ...

    async def aacquire(self, namespace: str, key: str, token: str) -> Turn:
        """`acquire`, awaitable."""
        ...

    async def apark(self, namespace: str, key: str, wait: float) -> bool:
        """`park`, awaitable (never blocks the event loop)."""
        ...

    async def arelease(self, namespace: str, key: str, token: str) -> int:
        """`release`, awaitable."""
        ...
