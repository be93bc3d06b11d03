"""`SyncCache`: the blocking twin of a `Cache` (get one from ``cache.sync``).

Same backend, settings, events and entry rules (the judgement and encoding live in `Cache`);
what differs is only how callers wait: threads loading the same key wait on one `Call`, and
background reloads (stale-while-revalidate, XFetch) run on a small shared thread pool.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sysdesign_kit.cache.flight import ThreadFlights
from sysdesign_kit.cache.load_lock import new_token
from sysdesign_kit.cache.serializers import Envelope
from sysdesign_kit.errors import BackendUnavailable

if TYPE_CHECKING:
    from sysdesign_kit.cache.cache import Args, Cache, Kwargs, Site, Tags
    from sysdesign_kit.cache.load_lock import LoadLock

__all__ = ["SyncCache"]

T = TypeVar("T")

_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
#: Threads shared by every sync cache for background reloads.
POOL_THREADS = 4


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                POOL_THREADS, thread_name_prefix="sysdesign-cache-reload"
            )
        return _POOL


class SyncCache:
    """Blocking `Cache`: the same methods, without ``await``."""

    __slots__ = ("_flights", "_pending", "cache")

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._flights = ThreadFlights()
        self._pending: set[concurrent.futures.Future[Any]] = set()

    def __repr__(self) -> str:
        return f"SyncCache({self.cache!r})"

    def get(self, key: str, default: Any = None) -> Any:
        """Blocking `Cache.get`."""
        cache = self.cache
        key = cache._key(key)
        raw = self._read(key)
        if raw is not None:
            envelope = cache._open(cache._site, key, raw)
            if envelope is not None and cache._time() < envelope.fresh_until:
                if cache.events.listeners:
                    cache._accessed("hit")
                return envelope.value
        if cache.events.listeners:
            cache._accessed("miss")
        return default

    def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Blocking `Cache.set`."""
        cache = self.cache
        key, tags = cache._key(key), cache._tags(tags)
        site = cache._site if ttl is None else cache.site_for(ttl)
        item, size, keep = cache._entry(site, key, value, 0.0, stored_none=True)
        cache._write(key, item, size, keep, tags)

    def delete(self, key: str) -> bool:
        """Blocking `Cache.delete`."""
        cache = self.cache
        return cache.backend.delete(cache.namespace, cache._key(key))

    def get_or_load(
        self,
        key: str,
        loader: Callable[[], T],
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
    ) -> T:
        """Blocking `Cache.get_or_load`: ``loader()`` runs in the first caller's thread."""
        cache = self.cache
        key, tags = cache._key(key), cache._tags(tags)
        site = cache._site if ttl is None else cache.site_for(ttl)
        result: T = self._fetch(site, key, loader, (), {}, tags)
        return result

    def invalidate_tags(self, *tags: str) -> None:
        """Blocking `Cache.invalidate_tags`."""
        self.cache.backend.invalidate_tags(self.cache._tags(tags))

    def invalidate_all(self) -> int:
        """Blocking `Cache.invalidate_all`."""
        return self.cache.backend.bump(self.cache.namespace)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for the background reloads started from sync code; whether all finished."""
        pending = list(self._pending)
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done and len(self._flights) == 0

    # -- the blocking driver ----------------------------------------------------------------

    def _read(self, key: str) -> Any:
        cache = self.cache
        try:
            return cache._lookup(key)
        except BackendUnavailable as exc:
            cache._backend_failed(exc, "get", "miss")
            return None

    def _fetch(
        self,
        site: Site,
        key: str,
        fn: Callable[..., Any],
        args: Args,
        kwargs: Kwargs,
        tags: Tags,
    ) -> Any:
        """Everything but the plain hit (see `Cache._afetch`)."""
        cache = self.cache
        if not cache._local:
            loading = self._flights.loading(key)
            if loading is not None:
                if cache.events.listeners:
                    cache._accessed("coalesced")
                return loading.wait()
        raw = self._read(key)
        envelope = cache._open(site, key, raw) if raw is not None else None
        if envelope is not None:
            now = cache._time()
            if now < envelope.fresh_until:
                if cache._early(site, envelope, now):
                    self._refresh(site, key, fn, args, kwargs, tags, envelope)
                if cache.events.listeners:
                    cache._accessed("hit")
                return envelope.value
            if now < envelope.stale_until:
                self._refresh(site, key, fn, args, kwargs, tags, envelope)
                if cache.events.listeners:
                    cache._accessed("stale")
                return envelope.value
            if now >= envelope.error_until:
                envelope = None
        call, leader = self._flights.join(key)
        if not leader:
            if cache.events.listeners:
                cache._accessed("coalesced")
            return call.wait()
        if cache.events.listeners:
            cache._accessed("miss")
        return self._lead(site, key, fn, args, kwargs, tags, envelope, call, refresh=False)

    def _refresh(
        self,
        site: Site,
        key: str,
        fn: Callable[..., Any],
        args: Args,
        kwargs: Kwargs,
        tags: Tags,
        previous: Envelope[Any],
    ) -> None:
        call, leader = self._flights.join(key, refresh=True)
        if not leader:
            return
        future = _pool().submit(
            self._lead, site, key, fn, args, kwargs, tags, previous, call, refresh=True
        )
        self._pending.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: concurrent.futures.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled():
            future.exception()  # reported already; retrieved so nothing logs it twice

    def _lead(
        self,
        site: Site,
        key: str,
        fn: Callable[..., Any],
        args: Args,
        kwargs: Kwargs,
        tags: Tags,
        previous: Envelope[Any] | None,
        call: Any,
        *,
        refresh: bool,
    ) -> Any:
        cache = self.cache
        value: Any = None
        error: BaseException | None = None
        turn: str | Envelope[Any] | None = None
        try:
            if cache.load_lock is not None:
                turn = self._turn(cache.load_lock, site, key, previous, refresh)
                if isinstance(turn, Envelope):
                    value = turn.value
                    return value
            start = cache._monotonic()
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                value = cache._failed(key, exc, cache._monotonic() - start, previous, refresh)
                return value
            stored = cache._loaded(site, key, value, cache._monotonic() - start, refresh)
            if stored is not None:
                item, size, keep = stored
                if callable(tags):
                    tags = tags(*args, **kwargs)
                try:
                    cache._write(key, item, size, keep, tags)
                except BackendUnavailable as exc:
                    cache._backend_failed(exc, "set", "not_cached")
            return value
        except BaseException as exc:
            error = exc
            raise
        finally:
            if isinstance(turn, str) and cache.load_lock is not None:
                try:
                    cache.load_lock.release(cache.namespace, key, turn)
                except BackendUnavailable as exc:
                    cache._backend_failed(exc, "unlock", "expires")
            self._flights.finish(key, call, value, error)

    def _turn(
        self,
        lock: LoadLock,
        site: Site,
        key: str,
        previous: Envelope[Any] | None,
        refresh: bool,
    ) -> str | Envelope[Any] | None:
        """Blocking `Cache._aturn`."""
        cache = self.cache
        token = new_token()
        began = cache._monotonic()
        while True:
            try:
                left, raw = lock.acquire(cache.namespace, key, token)
                if left == 0.0:
                    stored = cache._live(site, key, raw)
                    if stored is None:
                        return token
                    lock.release(cache.namespace, key, token)
                    return stored
                if refresh and previous is not None:
                    return previous
                lock.park(cache.namespace, key, left)
            except BackendUnavailable as exc:
                cache._backend_failed(exc, "lock", "load")
                return None
            stored = cache._live(site, key, self._read(key))
            if stored is not None:
                if cache.events.listeners:
                    cache._loaded_event("shared", cache._monotonic() - began)
                return stored
