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

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

from sysdesign_kit.breaker import CircuitBreaker, CountWindow
from sysdesign_kit.cache.backend import CacheBackend
from sysdesign_kit.cache.load_lock import LoadLock, Turn
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import BackendUnavailable, CircuitOpen, ConfigurationError
from sysdesign_kit.events import Listener

__all__ = ["GuardedBackend", "GuardedLoadLock", "backend_breaker", "guarded"]

P = ParamSpec("P")
R = TypeVar("R")

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
    failed (counting once 5 calls were made); stays open 5 s; one probe call in half-open
    closes it.

    Args:
        kind: the backend's ``kind`` (``"redis"``...).
        clock: the breaker's monotonic time source.
        listeners: receive the breaker's events (transitions, rejections, finished calls);
            while anyone listens, each call through a `GuardedBackend` is timed and
            published (about 1 µs more per call).
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


class _Guard:
    """Runs calls through a breaker, turning its refusals into `BackendUnavailable`.

    With a lean breaker (no slow-call detection, no result test) and no one listening, a
    call takes the breaker's primitive (acquire, then record the outcome) without reading
    the time: about a third of the cost of ``breaker.call``, which matters for a backend
    that answers from memory (the local tier of a two-level backend). `GuardedBackend`
    writes this out in `get` and `aget`, which every hit goes through.
    """

    __slots__ = ("_lean", "_what", "breaker")

    def __init__(self, breaker: CircuitBreaker, what: str) -> None:
        #: The breaker every call goes through.
        self.breaker = breaker
        self._what = what
        self._lean = breaker.lean

    def _run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        breaker = self.breaker
        try:
            if not self._lean or breaker.events.listeners:
                return breaker.call(fn, *args, **kwargs)
            permit = breaker.acquire()
        except CircuitOpen as exc:
            raise _skipped(self._what, exc) from exc
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            breaker.on_error(permit, error)
            raise
        breaker.on_success(permit)
        return result

    async def _arun(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        breaker = self.breaker
        try:
            if not self._lean or breaker.events.listeners:
                return await breaker.call_async(fn, *args, **kwargs)
            permit = await breaker.aacquire()
        except CircuitOpen as exc:
            raise _skipped(self._what, exc) from exc
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            breaker.on_error(permit, error)
            raise
        breaker.on_success(permit)
        return result


def _skipped(what: str, error: CircuitOpen) -> BackendUnavailable:
    return BackendUnavailable(f"{what} not called: {error}")


class GuardedBackend(_Guard):
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

    __slots__ = ("inner", "kind", "load_lock", "local", "peek")

    def __init__(self, backend: CacheBackend, *, breaker: CircuitBreaker | None = None) -> None:
        if not isinstance(backend, CacheBackend):
            raise ConfigurationError(f"backend must be a CacheBackend, got {backend!r}")
        if breaker is None:
            breaker = backend_breaker(backend.kind)
        elif not isinstance(breaker, CircuitBreaker):
            raise ConfigurationError(f"breaker must be a CircuitBreaker, got {breaker!r}")
        super().__init__(breaker, f"{backend.kind} backend")
        #: The protected backend.
        self.inner = backend
        self.kind = backend.kind
        self.local = backend.local
        #: The inner backend's ``peek`` (a read of what it holds in memory, no I/O), not
        #: guarded: nothing there can fail the way the breaker watches for.
        self.peek = getattr(backend, "peek", None)
        lock = getattr(backend, "load_lock", None)
        #: The inner backend's load lock behind the same breaker (None if it has none).
        self.load_lock = GuardedLoadLock(lock, breaker) if isinstance(lock, LoadLock) else None

    def __repr__(self) -> str:
        return f"GuardedBackend({self.inner!r}, breaker={self.breaker!r})"

    # Each call raises what the inner one does, and `BackendUnavailable` without calling it
    # while the breaker is open.

    # -- blocking ---------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> bytes | None:
        """The inner backend's `get`."""
        breaker = self.breaker  # `_Guard._run`, written out: every hit comes this way
        try:
            if not self._lean or breaker.events.listeners:
                return breaker.call(self.inner.get, namespace, key)
            permit = breaker.acquire()
        except CircuitOpen as exc:
            raise _skipped(self._what, exc) from exc
        try:
            result = self.inner.get(namespace, key)
        except BaseException as error:
            breaker.on_error(permit, error)
            raise
        breaker.on_success(permit)
        return result

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """The inner backend's `set`."""
        self._run(self.inner.set, namespace, key, data, ttl, tags)

    def delete(self, namespace: str, key: str) -> bool:
        """The inner backend's `delete`."""
        return self._run(self.inner.delete, namespace, key)

    def version(self, namespace: str) -> int:
        """The inner backend's `version`."""
        return self._run(self.inner.version, namespace)

    def bump(self, namespace: str) -> int:
        """The inner backend's `bump`."""
        return self._run(self.inner.bump, namespace)

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        """The inner backend's `invalidate_tags`."""
        self._run(self.inner.invalidate_tags, tags)

    def close(self) -> None:
        """Close the inner backend (if it has a ``close``)."""
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    # -- asyncio ----------------------------------------------------------------------------

    async def aget(self, namespace: str, key: str) -> bytes | None:
        """`get`, awaitable."""
        breaker = self.breaker  # `_Guard._arun`, written out: every hit comes this way
        try:
            if not self._lean or breaker.events.listeners:
                return await breaker.call_async(self.inner.aget, namespace, key)
            permit = await breaker.aacquire()
        except CircuitOpen as exc:
            raise _skipped(self._what, exc) from exc
        try:
            result = await self.inner.aget(namespace, key)
        except BaseException as error:
            breaker.on_error(permit, error)
            raise
        breaker.on_success(permit)
        return result

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`, awaitable."""
        await self._arun(self.inner.aset, namespace, key, data, ttl, tags)

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`, awaitable."""
        return await self._arun(self.inner.adelete, namespace, key)

    async def abump(self, namespace: str) -> int:
        """`bump`, awaitable."""
        return await self._arun(self.inner.abump, namespace)

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        """`invalidate_tags`, awaitable."""
        await self._arun(self.inner.ainvalidate_tags, tags)

    async def aclose(self) -> None:
        """Close the inner backend: its ``aclose`` if it has one, else its ``close``."""
        aclose: Any = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            self.close()


class GuardedLoadLock(_Guard):
    """A `LoadLock` whose calls go through a breaker (a `GuardedBackend`'s, usually).

    Each call raises what the inner one does, and `BackendUnavailable` without calling it
    while the breaker is open.

    Args:
        lock: the lock to protect.
        breaker: the breaker to call it through.
    """

    __slots__ = ("inner", "ttl")

    def __init__(self, lock: LoadLock, breaker: CircuitBreaker) -> None:
        super().__init__(breaker, "load lock")
        #: The protected lock.
        self.inner = lock
        self.ttl = lock.ttl

    def __repr__(self) -> str:
        return f"GuardedLoadLock({self.inner!r}, breaker={self.breaker!r})"

    def acquire(self, namespace: str, key: str, token: str) -> Turn:
        """The inner lock's `acquire`."""
        return self._run(self.inner.acquire, namespace, key, token)

    def park(self, namespace: str, key: str, wait: float) -> bool:
        """The inner lock's `park`."""
        return self._run(self.inner.park, namespace, key, wait)

    def release(self, namespace: str, key: str, token: str) -> int:
        """The inner lock's `release`."""
        return self._run(self.inner.release, namespace, key, token)

    async def aacquire(self, namespace: str, key: str, token: str) -> Turn:
        """`acquire`, awaitable."""
        return await self._arun(self.inner.aacquire, namespace, key, token)

    async def apark(self, namespace: str, key: str, wait: float) -> bool:
        """`park`, awaitable."""
        return await self._arun(self.inner.apark, namespace, key, wait)

    async def arelease(self, namespace: str, key: str, token: str) -> int:
        """`release`, awaitable."""
        return await self._arun(self.inner.arelease, namespace, key, token)


def guarded(
    backend: CacheBackend,
    guard: bool | CircuitBreaker,
    *,
    clock: Clock = SYSTEM_CLOCK,
    listeners: Iterable[Listener] = (),
) -> CacheBackend:
    """``backend`` as a cache or the response cache uses it by default: behind a breaker
    when it does I/O.

    Args:
        backend: the backend given.
        guard: True for `backend_breaker` (on ``clock``, publishing to ``listeners``), a
            `CircuitBreaker` of one's own, or False to leave the backend bare. A backend
            without I/O (``local``) or already a `GuardedBackend` is returned as it is.

    Raises:
        ConfigurationError: ``guard`` is neither a bool nor a `CircuitBreaker`.
    """
    if guard is False or backend.local or isinstance(backend, GuardedBackend):
        return backend
    if guard is True:
        guard = backend_breaker(backend.kind, clock=clock, listeners=listeners)
    return GuardedBackend(backend, breaker=guard)
