"""`GuardedBackend`: a cache backend behind a circuit breaker, so an outage costs one timeout.

A `Cache` already fails open when its backend raises `BackendUnavailable`: a read is a miss
(the loader runs), a loaded value is returned unstored, and a `BackendFailure` event says
so. What it cannot do alone is stop paying for the outage: while Redis is down every call
waits for a connect or socket timeout before failing. Wrapped in a `GuardedBackend`, the
backend's calls go through a `CircuitBreaker`; once it has seen enough failures it opens and
every call raises `BackendUnavailable` at once (the `CircuitOpen` as ``__cause__``), which
the cache treats like any other outage. After the open time one probe call goes through;
if it succeeds the breaker closes and the cache is back on its backend.

::

    backend = GuardedBackend(RedisBackend.from_url(url, socket_timeout=0.2))
    products = Cache("products", backend=backend)

A backend's load lock (`RedisBackend.load_lock`, which the `Cache` uses to load a key once
across processes) talks to the same server, so the guard wraps it too (`GuardedLoadLock`,
same breaker): while the breaker is open the cache loads without the lock at once.

The default breaker (`backend_breaker`) counts only `BackendUnavailable` as a failure,
opens when half of the last 10 calls failed (after at least 5, so 5 failures in a row always
trip it), stays open 5 s and closes after one successful probe. A cache is an optimisation:
tripping early costs some extra loads, not tripping costs every caller a timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sysdesign_kit.breaker import CircuitBreaker, CountWindow
from sysdesign_kit.cache.backend import CacheBackend
from sysdesign_kit.cache.load_lock import LoadLock
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import BackendUnavailable, CircuitOpen, ConfigurationError
from sysdesign_kit.events import Listener

__all__ = ["GuardedBackend", "GuardedLoadLock", "backend_breaker"]

#: The default breaker's settings (see the module docstring for why).
WINDOW = CountWindow(10)
MINIMUM_CALLS = 5
FAILURE_RATE = 0.5
OPEN_FOR = 5.0
PROBES = 1


def backend_breaker(
    kind: str, *, clock: Clock = SYSTEM_CLOCK, listeners: Iterable[Listener] = ()
) -> CircuitBreaker:
    """The breaker `GuardedBackend` uses by default, named ``cache-backend:{kind}``.

    Counts only `BackendUnavailable` as a failure; opens when half of the last 10 calls
    failed (at least 5 of them); stays open 5 s; one probe call in half-open closes it.

    Args:
        kind: the backend's ``kind`` (``"redis"``...).
        clock: the breaker's monotonic time source.
        listeners: receive the breaker's events (transitions, rejections, finished calls).
    """
    return CircuitBreaker(
        f"cache-backend:{kind}",
        window=WINDOW,
        minimum_calls=MINIMUM_CALLS,
        failure_rate=FAILURE_RATE,
        open_for=OPEN_FOR,
        half_open_calls=PROBES,
        failure_on=BackendUnavailable,
        clock=clock,
        listeners=listeners,
    )


def _skipped(what: str, error: CircuitOpen) -> BackendUnavailable:
    return BackendUnavailable(f"{what} not called: {error}")


class GuardedBackend:
    """A `CacheBackend` that calls ``backend`` through a circuit breaker.

    Same protocol, ``kind`` and ``local`` as the backend it wraps. The inner backend's own
    extras (``RedisBackend.entry_key``, ``settings``...) are on `inner`; `close` and
    `aclose` are passed on to it; its ``load_lock``, if it has one, is `load_lock` here,
    behind the same breaker.

    Args:
        backend: the backend to protect.
        breaker: the breaker to call it through (default: `backend_breaker` for the
            backend's kind). A breaker given here classifies failures by its own
            ``failure_on``; build it with ``failure_on=BackendUnavailable`` so that a
            caller's mistake (an invalid TTL) never trips it.

    Raises:
        ConfigurationError: ``backend`` is not a `CacheBackend`, or ``breaker`` not a
            `CircuitBreaker`.
    """

    __slots__ = ("_acall", "_call", "breaker", "inner", "kind", "load_lock", "local")

    def __init__(self, backend: CacheBackend, *, breaker: CircuitBreaker | None = None) -> None:
        if not isinstance(backend, CacheBackend):
            raise ConfigurationError(f"backend must be a CacheBackend, got {backend!r}")
        if breaker is None:
            breaker = backend_breaker(backend.kind)
        elif not isinstance(breaker, CircuitBreaker):
            raise ConfigurationError(f"breaker must be a CircuitBreaker, got {breaker!r}")
        #: The protected backend.
        self.inner = backend
        self.kind = backend.kind
        self.local = backend.local
        #: The breaker every call goes through.
        self.breaker = breaker
        self._call = breaker.call
        self._acall = breaker.call_async
        lock = getattr(backend, "load_lock", None)
        #: The inner backend's load lock behind the same breaker (None if it has none).
        self.load_lock = GuardedLoadLock(lock, breaker) if isinstance(lock, LoadLock) else None

    def __repr__(self) -> str:
        return f"GuardedBackend({self.inner!r}, breaker={self.breaker!r})"

    # -- blocking ---------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> bytes | None:
        """The inner backend's `get`.

        Raises:
            BackendUnavailable: the backend failed, or the breaker is open.
        """
        try:
            return self._call(self.inner.get, namespace, key)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """The inner backend's `set`.

        Raises:
            BackendUnavailable: the backend failed, or the breaker is open.
        """
        try:
            self._call(self.inner.set, namespace, key, data, ttl, tags)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    def delete(self, namespace: str, key: str) -> bool:
        """The inner backend's `delete`.

        Raises:
            BackendUnavailable: the backend failed, or the breaker is open.
        """
        try:
            return self._call(self.inner.delete, namespace, key)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    def version(self, namespace: str) -> int:
        """The inner backend's `version`.

        Raises:
            BackendUnavailable: the backend failed, or the breaker is open.
        """
        try:
            return self._call(self.inner.version, namespace)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    def bump(self, namespace: str) -> int:
        """The inner backend's `bump`.

        Raises:
            BackendUnavailable: the backend failed, or the breaker is open.
        """
        try:
            return self._call(self.inner.bump, namespace)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        """The inner backend's `invalidate_tags`.

        Raises:
            BackendUnavailable: the backend failed, or the breaker is open.
        """
        try:
            self._call(self.inner.invalidate_tags, tags)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    def close(self) -> None:
        """Close the inner backend (if it has a ``close``)."""
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    # -- asyncio ----------------------------------------------------------------------------

    async def aget(self, namespace: str, key: str) -> bytes | None:
        """`get`, awaitable."""
        try:
            return await self._acall(self.inner.aget, namespace, key)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`, awaitable."""
        try:
            await self._acall(self.inner.aset, namespace, key, data, ttl, tags)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`, awaitable."""
        try:
            return await self._acall(self.inner.adelete, namespace, key)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    async def abump(self, namespace: str) -> int:
        """`bump`, awaitable."""
        try:
            return await self._acall(self.inner.abump, namespace)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        """`invalidate_tags`, awaitable."""
        try:
            await self._acall(self.inner.ainvalidate_tags, tags)
        except CircuitOpen as exc:
            raise _skipped(f"{self.kind} backend", exc) from exc

    async def aclose(self) -> None:
        """Close the inner backend: its ``aclose`` if it has one, else its ``close``."""
        aclose: Any = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            self.close()


class GuardedLoadLock:
    """A `LoadLock` whose calls go through a breaker (a `GuardedBackend`'s, usually).

    Args:
        lock: the lock to protect.
        breaker: the breaker to call it through.
    """

    __slots__ = ("_acall", "_call", "breaker", "inner", "ttl")

    def __init__(self, lock: LoadLock, breaker: CircuitBreaker) -> None:
        #: The protected lock.
        self.inner = lock
        self.ttl = lock.ttl
        self.breaker = breaker
        self._call = breaker.call
        self._acall = breaker.call_async

    def __repr__(self) -> str:
        return f"GuardedLoadLock({self.inner!r}, breaker={self.breaker!r})"

    def acquire(self, namespace: str, key: str, token: str) -> float:
        """The inner lock's `acquire`.

        Raises:
            BackendUnavailable: the lock's store failed, or the breaker is open.
        """
        try:
            return self._call(self.inner.acquire, namespace, key, token)
        except CircuitOpen as exc:
            raise _skipped("load lock", exc) from exc

    def park(self, namespace: str, key: str, wait: float) -> bool:
        """The inner lock's `park`.

        Raises:
            BackendUnavailable: the lock's store failed, or the breaker is open.
        """
        try:
            return self._call(self.inner.park, namespace, key, wait)
        except CircuitOpen as exc:
            raise _skipped("load lock", exc) from exc

    def release(self, namespace: str, key: str, token: str) -> int:
        """The inner lock's `release`.

        Raises:
            BackendUnavailable: the lock's store failed, or the breaker is open.
        """
        try:
            return self._call(self.inner.release, namespace, key, token)
        except CircuitOpen as exc:
            raise _skipped("load lock", exc) from exc

    async def aacquire(self, namespace: str, key: str, token: str) -> float:
        """`acquire`, awaitable."""
        try:
            return await self._acall(self.inner.aacquire, namespace, key, token)
        except CircuitOpen as exc:
            raise _skipped("load lock", exc) from exc

    async def apark(self, namespace: str, key: str, wait: float) -> bool:
        """`park`, awaitable."""
        try:
            return await self._acall(self.inner.apark, namespace, key, wait)
        except CircuitOpen as exc:
            raise _skipped("load lock", exc) from exc

    async def arelease(self, namespace: str, key: str, token: str) -> int:
        """`release`, awaitable."""
        try:
            return await self._acall(self.inner.arelease, namespace, key, token)
        except CircuitOpen as exc:
            raise _skipped("load lock", exc) from exc
