"""`Cache`: cache-aside over a backend, with stampede protection on the miss path only.

::

    products = Cache("products", ttl=3600, stale_while_revalidate=60, stale_if_error=600)

    @products.cached(key="product:{product_id}", tags=["product:{product_id}"])
    async def get_product(product_id: int) -> Product: ...

    await products.get_or_load("product:42", lambda: fetch(42))   # direct call, async
    products.sync.get_or_load("product:42", lambda: fetch_blocking(42))
    await products.invalidate_tags("product:42")                   # or invalidate_all()

A read is judged against the entry's envelope (see `serializers`):

==========================  =================================================================
fresh, far from expiry      hit: the value, nothing else (no lock, no random draw)
fresh, near expiry          hit; XFetch may start one background reload (`xfetch`)
stale (in SWR window)       the stale value at once; one background reload
expired (in SIE window)     load; if the loader raises, the stale value instead
missing / past every window load
==========================  =================================================================

Loads are single-flight per key: N concurrent callers of a cold key make one loader call
and all get its answer (asyncio callers await one task; threads wait on one event). A
loader's None is cached only with ``negative_ttl``; its exceptions are raised to every
waiter as they are (not wrapped), unless stale-if-error serves the last good value.

``cache.sync`` is the blocking twin (same backend, settings, events); its background
reloads run on a small shared thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sysdesign_kit.breaker import CircuitBreaker
from sysdesign_kit.cache.backend import CacheBackend
from sysdesign_kit.cache.flight import AsyncFlight
from sysdesign_kit.cache.guarded import guarded
from sysdesign_kit.cache.keys import DEFAULT_MAX_KEY_LENGTH, MIN_KEY_LENGTH, check_key, fit_key
from sysdesign_kit.cache.load_lock import LoadLock, new_token
from sysdesign_kit.cache.memory import MemoryBackend
from sysdesign_kit.cache.policy import PRODUCT_TTL, CachePolicy
from sysdesign_kit.cache.serializers import (
    ENCODE_ERRORS,
    Codec,
    Envelope,
    Serializer,
    make_codec,
)
from sysdesign_kit.cache.xfetch import HORIZON, should_refresh_early
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import (
    BackendUnavailable,
    CircuitOpen,
    ConfigurationError,
    Unserializable,
    ValueTooLarge,
)
from sysdesign_kit.events import BackendFailure, CacheAccessed, CacheLoaded, Listener, Publisher

if TYPE_CHECKING:
    from sysdesign_kit.cache.decorator import Decorator
    from sysdesign_kit.cache.mapping import CacheMapping
    from sysdesign_kit.cache.sync import SyncCache

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "Cache", "Site", "Tags"]

_log = logging.getLogger("sysdesign_kit.cache")

T = TypeVar("T")

#: Largest encoded value stored by default (1 MiB).
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024

Args = tuple[Any, ...]
Kwargs = dict[str, Any]
#: Tags, or a function of the call's arguments giving them (only called when storing).
Tags = Sequence[str] | Callable[..., tuple[str, ...]]


class Site:
    """One way of reading and writing a cache: a policy, a codec and hot-path constants.

    A `Cache` has its own site; each ``@cached`` function gets one with its overrides and
    its return type. ``decode`` is None for an object cache (``share_objects=True``).
    """

    __slots__ = ("codec", "decode", "encode", "policy", "resolve", "xwin")

    def __init__(
        self,
        policy: CachePolicy,
        codec: Codec | None,
        shared: bool,
        resolve: Callable[[], Codec] | None = None,
    ) -> None:
        self.policy = policy
        # Hits further than delta * xwin seconds from expiry need no XFetch draw.
        self.xwin = policy.early_refresh_beta * HORIZON
        self.resolve = resolve
        self.codec = codec
        self.encode: Callable[[Envelope[Any]], bytes]
        self.decode: Callable[[bytes], Envelope[Any]] | None
        if codec is not None:
            self.encode = codec.encode
            self.decode = None if shared else codec.decode
        else:  # the value type is resolved on first use (a forward reference)
            self.encode = self._resolve_encode
            self.decode = None if shared else self._resolve_decode

    def _resolved(self) -> Codec:
        resolve = self.resolve
        if resolve is None:  # pragma: no cover - only lazy sites install the resolvers
            raise RuntimeError("this site has no value type to resolve")
        codec = self.codec = resolve()
        self.encode = codec.encode
        if self.decode is not None:
            self.decode = codec.decode
        return codec

    # Wrappers that captured these before resolution keep calling them: after the first
    # call they cost one attribute test more than the codec's own functions.
    def _resolve_encode(self, envelope: Envelope[Any]) -> bytes:
        return (self.codec or self._resolved()).encode(envelope)

    def _resolve_decode(self, raw: bytes) -> Envelope[Any]:
        return (self.codec or self._resolved()).decode(raw)


class Cache:
    """A cache-aside cache: values loaded once, served until stale, reloaded safely.

    Args:
        name: the cache's namespace in its backend (several caches can share a backend);
            also names it in events.
        backend: where entries live (default: a new `MemoryBackend` on ``clock``).
        ttl: seconds a loaded value is fresh (default one hour: the seed's product cache).
        stale_while_revalidate: seconds after ``ttl`` during which the stale value is
            served while one background reload runs.
        stale_if_error: seconds after ``ttl`` during which the stale value is served if
            the loader raises.
        negative_ttl: seconds a loader's None is cached as "not found" (0: not cached).
        early_refresh_beta: XFetch eagerness (0 turns early refresh off).
        serializer: ``"msgpack"`` (default), ``"json"`` or an object with ``dumps`` and
            ``loads`` (see `Serializer`; the only way to use pickle).
        value_type: the type values are decoded as (msgspec rebuilds dataclasses, Structs,
            datetimes...); default ``Any`` (dicts, lists, scalars).
        share_objects: keep the Python objects themselves in a `MemoryBackend` instead of
            their bytes: a hit skips decoding (about 2x faster) but every caller gets the
            same object, so a caller that mutates it changes the cached value. Values are
            still encoded once when stored, for the size limits and to fail alike.
        max_value_bytes: largest encoded value stored (a `MemoryBackend`'s ``max_bytes``
            caps it too). `set` raises `ValueTooLarge`; a loaded value is returned but not
            stored, with a `BackendFailure` event (``outcome="not_cached"``).
        max_key_length: keys longer than this are stored hashed (see `keys.fit_key`).
        guard: put a backend that does I/O behind a circuit breaker (see `guarded`), so an
            outage costs a few timeouts, not one per call: True wraps it in a
            `GuardedBackend` with the default breaker (on ``clock``, publishing to
            ``listeners``), False leaves it bare, or a `CircuitBreaker` to use. A
            `GuardedBackend` given as ``backend`` is used as it is.
        load_lock: one loader per key across processes (see `load_lock`): True uses the
            backend's own ``load_lock`` if it has one (`RedisBackend` does), False none, or
            a `LoadLock` to use.
        clock: wall time for entry windows, monotonic time for load durations.
        rng: random source for XFetch (seed one for reproducible decisions).
        listeners: callables receiving `CacheAccessed`, `CacheLoaded`, `BackendFailure`.

    Raises:
        ConfigurationError: any setting out of range, an unknown serializer, a value type
            msgspec cannot decode, ``share_objects`` with a backend that stores bytes.
    """

    def __init__(
        self,
        name: str = "default",
        *,
        backend: CacheBackend | None = None,
        ttl: float = PRODUCT_TTL,
        stale_while_revalidate: float = 0.0,
        stale_if_error: float = 0.0,
        negative_ttl: float = 0.0,
        early_refresh_beta: float = 1.0,
        serializer: str | Serializer = "msgpack",
        value_type: Any = Any,
        share_objects: bool = False,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        max_key_length: int = DEFAULT_MAX_KEY_LENGTH,
        guard: bool | CircuitBreaker = True,
        load_lock: LoadLock | bool = True,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if not isinstance(name, str) or not 0 < len(name) <= 200:
            raise ConfigurationError(f"name must be 1..200 characters, got {name!r}")
        if not isinstance(clock, Clock):
            raise ConfigurationError(f"clock must be a Clock, got {clock!r}")
        if backend is None:
            backend = MemoryBackend(clock=clock)
        elif not isinstance(backend, CacheBackend):
            raise ConfigurationError(f"backend must be a CacheBackend, got {backend!r}")
        listeners = tuple(listeners)
        backend = guarded(backend, guard, clock=clock, listeners=listeners)
        if share_objects and not isinstance(backend, MemoryBackend):
            raise ConfigurationError(
                "share_objects=True needs a MemoryBackend: other backends store bytes"
            )
        for label, value, low in (
            ("max_value_bytes", max_value_bytes, 1),
            ("max_key_length", max_key_length, MIN_KEY_LENGTH),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{label} must be an int >= {low}, got {value!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise ConfigurationError(f"rng must be a random.Random, got {rng!r}")
        if load_lock is True:
            load_lock = getattr(backend, "load_lock", None) or False
        if load_lock is not False and not isinstance(load_lock, LoadLock):
            raise ConfigurationError(f"load_lock must be a bool or a LoadLock, got {load_lock!r}")
        self.name = name
        self.namespace = name
        self.component = f"cache:{name}"
        self.backend = backend
        self.policy = CachePolicy(
            ttl, stale_while_revalidate, stale_if_error, negative_ttl, early_refresh_beta
        )
        self.serializer = serializer
        self.share_objects = bool(share_objects)
        if isinstance(backend, MemoryBackend):
            max_value_bytes = min(max_value_bytes, backend.max_bytes)
        self.max_value_bytes = max_value_bytes
        self.max_key_length = max_key_length
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.events = Publisher(listeners)
        self._site = self.site(self.policy, value_type)
        self._local = backend.local
        # Reads one key of this namespace: the memory backend's bound reader on the hot path.
        self._lookup: Callable[[str], Any] = (
            backend.reader(name)
            if isinstance(backend, MemoryBackend)
            else functools.partial(backend.get, name)
        )
        peek = getattr(backend, "peek", None)
        #: What a backend that does I/O holds in memory (see `CacheBackend`), or None.
        self._peek: Callable[[str], Any] | None = (
            functools.partial(peek, name) if callable(peek) and not self._local else None
        )
        self._put = backend.put if isinstance(backend, MemoryBackend) and share_objects else None
        self._time = clock.time
        self._monotonic = clock.monotonic
        self._random = self.rng.random
        self._flights: dict[str, AsyncFlight] = {}
        self._reads: dict[str, tuple[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]]] = {}
        self._sync: SyncCache | None = None
        #: Narrows loads to one per key across processes (None: single-flight per process).
        self.load_lock: LoadLock | None = load_lock or None

    def __repr__(self) -> str:
        return (
            f"Cache({self.name!r}, backend={self.backend!r}, ttl={self.policy.ttl}, "
            f"serializer={self._site.codec.name if self._site.codec else self.serializer!r})"
        )

    def site(self, policy: CachePolicy, value_type: Any, *, lazy: bool = False) -> Site:
        """A `Site` on this cache (what ``@cached`` builds for each function).

        Args:
            policy: its freshness settings.
            value_type: its value type, or (``lazy``) a callable returning it on first use.
            lazy: resolve ``value_type`` on first use (a forward reference).

        Raises:
            ConfigurationError: a type msgspec cannot decode (when not ``lazy``).
        """
        if lazy:
            return Site(
                policy, None, self.share_objects, lambda: make_codec(self.serializer, value_type())
            )
        return Site(policy, make_codec(self.serializer, value_type), self.share_objects)

    @property
    def sync(self) -> SyncCache:
        """The blocking twin of this cache (same backend, settings and events)."""
        if self._sync is None:
            from sysdesign_kit.cache.sync import SyncCache

            self._sync = SyncCache(self)
        return self._sync

    def cached(
        self,
        *,
        key: Any = None,
        ttl: float | None = None,
        tags: Any = None,
        stale_while_revalidate: float | None = None,
        stale_if_error: float | None = None,
        negative_ttl: float | None = None,
        early_refresh_beta: float | None = None,
        value_type: Any = None,
    ) -> Decorator:
        """Decorate a sync or async function with this cache (see `cached`)."""
        from sysdesign_kit.cache.decorator import cached

        return cached(
            cache=self,
            key=key,
            ttl=ttl,
            tags=tags,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            negative_ttl=negative_ttl,
            early_refresh_beta=early_refresh_beta,
            value_type=value_type,
        )

    def as_mapping(self, *, ttl: float | None = None, value_type: Any = Any) -> CacheMapping:
        """A mutable mapping over this cache (for the breaker's ``LastGood(store=...)``)."""
        from sysdesign_kit.cache.mapping import CacheMapping

        return CacheMapping(self, ttl=ttl, value_type=value_type)

    # -- the async API ----------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The fresh value under ``key``, or ``default`` (a negative entry reads as None).

        Raises:
            InvalidKey: ``key`` is not a non-empty str.
        """
        key = self._key(key)
        if self._local:
            raw = self._lookup(key)
        elif self._peek is None or (raw := self._peek(key)) is None:
            raw = await self._aread(key)
        if raw is not None:
            envelope = self._open(self._site, key, raw)
            if envelope is not None and self._time() < envelope.fresh_until:
                if self.events.listeners:
                    self._accessed("hit")
                return envelope.value
        if self.events.listeners:
            self._accessed("miss")
        return default

    async def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Store ``value`` (None included: stored as a value, not as "not found").

        Args:
            key: the key.
            value: what to store.
            ttl: seconds fresh (default: the cache's); the stale windows follow it.
            tags: tags to invalidate it by.

        Raises:
            InvalidKey: a bad key or tag.
            Unserializable: the serializer cannot encode ``value``.
            ValueTooLarge: its encoding is over ``max_value_bytes``.
            BackendUnavailable: the backend could not store it (an explicit write is not
                silently dropped).
        """
        key, tags = self._key(key), self._tags(tags)
        site = self._site if ttl is None else self.site_for(ttl)
        item, size, keep = self._entry(site, key, value, 0.0, stored_none=True)
        if self._local:
            self._write(key, item, size, keep, tags)
        else:
            await self.backend.aset(self.namespace, key, item, keep, tags)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there.

        Raises:
            BackendUnavailable: the backend could not be reached.
        """
        key = self._key(key)
        if self._local:
            return self.backend.delete(self.namespace, key)
        return await self.backend.adelete(self.namespace, key)

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
    ) -> T:
        """The value under ``key``, loaded with ``await loader()`` on a miss (single-flight).

        Args:
            key: the key.
            loader: called with no arguments (use a lambda or ``functools.partial``).
            ttl: seconds fresh (default: the cache's).
            tags: tags for the stored value.

        Returns:
            The cached, stale (within a window) or freshly loaded value.

        Raises:
            Unserializable: the loaded value cannot be encoded.
            Exception: the loader's own exception, unless stale-if-error applies.
        """
        key, tags = self._key(key), self._tags(tags)
        site = self._site if ttl is None else self.site_for(ttl)
        result: T = await self._afetch(site, key, loader, (), {}, tags)
        return result

    async def invalidate_tags(self, *tags: str) -> None:
        """Make every entry carrying one of ``tags`` miss (in every cache on the backend)."""
        await self.backend.ainvalidate_tags(self._tags(tags))

    async def invalidate_all(self) -> int:
        """Make every key of this cache miss at once (bumps its namespace version).

        Returns:
            The namespace's new version.
        """
        return await self.backend.abump(self.namespace)

    async def drain(self) -> None:
        """Wait for the background reloads started from async code to finish."""
        while self._flights:
            tasks = [flight.task for flight in self._flights.values()]
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- the async driver -------------------------------------------------------------------

    async def _afetch(
        self,
        site: Site,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        args: Args,
        kwargs: Kwargs,
        tags: Tags,
    ) -> Any:
        """Everything but the plain hit: early refresh, stale, coalescing and loading."""
        if self._local:
            raw = self._lookup(key)
        elif self._peek is not None and (raw := self._peek(key)) is not None:
            pass
        else:
            flight = self._flights.get(key)
            if flight is not None and not flight.refresh:
                # A load is under way: its answer is newer than anything the backend has,
                # and a cold key's callers must not each make a round trip to find out.
                loop = asyncio.get_running_loop()
                if flight.loop is loop:
                    if self.events.listeners:
                        self._accessed("coalesced")
                    waiter = loop.create_future()
                    flight.waiters.append(waiter)
                    return await waiter
            raw = await self._ashared_read(key)
        envelope = self._open(site, key, raw) if raw is not None else None
        if envelope is not None:
            now = self._time()
            if now < envelope.fresh_until:
                if self._early(site, envelope, now):
                    self._arefresh(site, key, fn, args, kwargs, tags, envelope)
                if self.events.listeners:
                    self._accessed("hit")
                return envelope.value
            if now < envelope.stale_until:
                self._arefresh(site, key, fn, args, kwargs, tags, envelope)
                if self.events.listeners:
                    self._accessed("stale")
                return envelope.value
            if now >= envelope.error_until:
                envelope = None
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        if flight is not None and flight.loop is loop:
            if self.events.listeners:
                self._accessed("coalesced")
        else:
            if self.events.listeners:
                self._accessed("miss")
            flight = self._start(loop, site, key, fn, args, kwargs, tags, envelope, False)
        # Each caller waits on a future of its own: a caller that is cancelled (a client
        # that went away) cancels only that, never the load the others are counting on.
        waiter = loop.create_future()
        flight.waiters.append(waiter)
        return await waiter

    def _start(
        self,
        loop: asyncio.AbstractEventLoop,
        site: Site,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        args: Args,
        kwargs: Kwargs,
        tags: Tags,
        previous: Envelope[Any] | None,
        refresh: bool,
    ) -> AsyncFlight:
        flight = AsyncFlight(loop, refresh)
        self._flights[key] = flight
        flight.start(self._aload(flight, site, key, fn, args, kwargs, tags, previous, refresh))
        return flight

    def _arefresh(
        self,
        site: Site,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        args: Args,
        kwargs: Kwargs,
        tags: Tags,
        previous: Envelope[Any],
    ) -> None:
        if key in self._flights:
            return
        loop = asyncio.get_running_loop()
        self._start(loop, site, key, fn, args, kwargs, tags, previous, True)

    async def _aload(
        self,
        flight: AsyncFlight,
        site: Site,
        key: str,
        fn: Callable[..., Awaitable[Any]],
        args: Args,
        kwargs: Kwargs,
        tags: Tags,
        previous: Envelope[Any] | None,
        refresh: bool,
    ) -> Any:
        turn: str | Envelope[Any] | None = None
        try:
            if self.load_lock is not None:
                turn = await self._aturn(self.load_lock, site, key, previous, refresh)
                if isinstance(turn, Envelope):
                    return turn.value
            start = self._monotonic()
            try:
                value = await fn(*args, **kwargs)
            except Exception as exc:
                return self._failed(key, exc, self._monotonic() - start, previous, refresh)
            duration = self._monotonic() - start
            stored = self._loaded(site, key, value, duration, refresh)
            if stored is not None:
                item, size, keep = stored
                if callable(tags):
                    tags = tags(*args, **kwargs)
                try:
                    if self._local:
                        self._write(key, item, size, keep, tags)
                    else:
                        await self.backend.aset(self.namespace, key, item, keep, tags)
                except BackendUnavailable as exc:
                    self._backend_failed(exc, "set", "not_cached")
            return value
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if turn is not None and self.load_lock is not None:
                await self._arelease(self.load_lock, key, turn)

    async def _aturn(
        self,
        lock: LoadLock,
        site: Site,
        key: str,
        previous: Envelope[Any] | None,
        refresh: bool,
    ) -> str | Envelope[Any] | None:
        """Whose turn it is to load ``key`` across processes (see `load_lock`).

        Returns this process's lock token (load, store, release), an envelope stored
        meanwhile by another process (use it), or None: load without the lock (its store
        failed; reported).
        """
        token = new_token()
        began = self._monotonic()
        while True:
            try:
                left, raw = await lock.aacquire(self.namespace, key, token)
                if left == 0.0:
                    # Another process may have stored it between our miss and our lock.
                    stored = self._live(site, key, raw)
                    if stored is None:
                        return token
                    await lock.arelease(self.namespace, key, token)
                    return stored
                if refresh and previous is not None:
                    return previous  # another process is refreshing it already
                await lock.apark(self.namespace, key, left)
            except BackendUnavailable as exc:
                self._backend_failed(exc, "lock", "load")
                return None
            stored = self._live(site, key, await self._aread(key))
            if stored is not None:
                if self.events.listeners:
                    self._loaded_event("shared", self._monotonic() - began)
                return stored

    async def _arelease(self, lock: LoadLock, key: str, turn: str | Envelope[Any]) -> None:
        if isinstance(turn, str):
            try:
                await lock.arelease(self.namespace, key, turn)
            except BackendUnavailable as exc:
                self._backend_failed(exc, "unlock", "expires")

    async def _ashared_read(self, key: str) -> bytes | None:
        """`_aread`, with the callers reading the same key at the same time sharing one
        round trip: a cold key's burst of callers would otherwise each ask the backend
        before the first of them gets to start the load they all end up joining."""
        loop = asyncio.get_running_loop()
        reading = self._reads.get(key)
        if reading is not None and reading[0] is loop:
            waiter: asyncio.Future[bytes | None] = loop.create_future()
            reading[1].append(waiter)
            return await waiter
        waiters: list[asyncio.Future[bytes | None]] = []
        self._reads[key] = (loop, waiters)
        raw = None
        try:
            raw = await self._aread(key)
        finally:
            # A reader that was cancelled leaves the others a miss: they go on to load.
            if self._reads.get(key, (None,))[0] is loop:
                del self._reads[key]
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(raw)
        return raw

    async def _aread(self, key: str) -> bytes | None:
        try:
            return await self.backend.aget(self.namespace, key)
        except BackendUnavailable as exc:
            self._backend_failed(exc, "get", "miss")
            return None

    # -- shared by both drivers -------------------------------------------------------------

    def site_for(self, ttl: float) -> Site:
        """This cache's site with another ``ttl``."""
        base = self._site
        return Site(self.policy.override(ttl=ttl), base.codec, self.share_objects, base.resolve)

    def _key(self, key: str) -> str:
        if type(key) is not str or not key:
            key = check_key(key)
        return key if len(key) <= self.max_key_length else fit_key(key, self.max_key_length)

    def _tags(self, tags: Iterable[str]) -> tuple[str, ...]:
        if isinstance(tags, str):
            tags = (tags,)
        return tuple(check_key(tag) for tag in tags)

    def _open(self, site: Site, key: str, raw: Any) -> Envelope[Any] | None:
        """The envelope in ``raw``, or None (reported) when it does not decode."""
        decode = site.decode
        if decode is None:
            envelope: Envelope[Any] = raw
            return envelope
        try:
            return decode(raw)
        except Exception as exc:
            self._corrupt(key, exc)
            return None

    def _live(self, site: Site, key: str, raw: Any) -> Envelope[Any] | None:
        """The envelope in ``raw`` if it is fresh (a value or a "not found"), else None."""
        if raw is None:
            return None
        envelope = self._open(site, key, raw)
        if envelope is None or self._time() >= envelope.fresh_until:
            return None
        return envelope

    def _early(self, site: Site, envelope: Envelope[Any], now: float) -> bool:
        """XFetch, drawing only within its horizon of the expiry."""
        delta = envelope.delta
        if now + delta * site.xwin < envelope.fresh_until:
            return False
        u = 1.0 - self._random()
        return should_refresh_early(
            now, envelope.fresh_until, delta, site.policy.early_refresh_beta, u
        )

    def _entry(
        self, site: Site, key: str, value: Any, delta: float, *, stored_none: bool
    ) -> tuple[Any, int, float]:
        """What to store for ``value``: (item, size, seconds to keep)."""
        policy = site.policy
        now = self._time()
        if value is None and not stored_none:
            until = now + policy.negative_ttl
            envelope: Envelope[Any] = Envelope(None, until, until, until, delta, True)
            keep = policy.negative_ttl
        else:
            fresh = now + policy.ttl
            envelope = Envelope(
                value,
                fresh,
                fresh + policy.stale_while_revalidate,
                fresh + policy.stale_if_error,
                delta,
            )
            keep = policy.keep
        try:
            data = site.encode(envelope)
        except ConfigurationError:
            raise
        except ENCODE_ERRORS as exc:
            raise Unserializable(key, value, str(exc)) from exc
        except Exception as exc:  # a custom serializer's own failure
            raise Unserializable(key, value, f"{type(exc).__name__}: {exc}") from exc
        if len(data) > self.max_value_bytes:
            raise ValueTooLarge(key, len(data), self.max_value_bytes)
        if self._put is not None:
            return envelope, len(data), keep
        return data, len(data), keep

    def _write(self, key: str, item: Any, size: int, keep: float, tags: Sequence[str]) -> None:
        if self._put is not None:
            self._put(self.namespace, key, item, size, keep, tags)
        else:
            self.backend.set(self.namespace, key, item, keep, tags)

    def _loaded(
        self, site: Site, key: str, value: Any, duration: float, refresh: bool
    ) -> tuple[Any, int, float] | None:
        """After a successful load: publish, and what to store (None: nothing)."""
        if value is None and site.policy.negative_ttl == 0.0:
            if self.events.listeners:
                self._loaded_event("missing", duration)
            return None
        if self.events.listeners:
            outcome = "refreshed" if refresh else "missing" if value is None else "loaded"
            self._loaded_event(outcome, duration)
        try:
            return self._entry(site, key, value, duration, stored_none=False)
        except ValueTooLarge as exc:
            _log.warning("cache %r: %s; returned without caching", self.name, exc)
            if self.events.listeners:
                self.events.publish(
                    BackendFailure(
                        self.component, self.backend.kind, "set", f"ValueTooLarge: {exc}",
                        "not_cached",
                    )
                )  # fmt: skip
            return None

    def _failed(
        self,
        key: str,
        error: Exception,
        duration: float,
        previous: Envelope[Any] | None,
        refresh: bool,
    ) -> Any:
        """After a loader raised: the stale value within stale-if-error, else raise."""
        if self.events.listeners:
            self._loaded_event("failed", duration)
        if previous is not None and self._time() < previous.error_until:
            if self.events.listeners and not refresh:
                self._accessed("stale")
            return previous.value
        if refresh:
            _log.warning(
                "cache %r: background reload of %r failed: %s: %s",
                self.name, key, type(error).__name__, error,
            )  # fmt: skip
        raise error

    def _accessed(self, outcome: Any) -> None:
        self.events.publish(CacheAccessed(self.component, self.name, outcome))

    def _loaded_event(self, outcome: str, duration: float) -> None:
        self.events.publish(CacheLoaded(self.component, self.name, outcome, duration))

    def _corrupt(self, key: str, error: Exception) -> None:
        _log.warning(
            "cache %r: entry %r does not decode (%s: %s); treated as a miss",
            self.name, key, type(error).__name__, error,
        )  # fmt: skip
        if self.events.listeners:
            self.events.publish(
                BackendFailure(
                    self.component, self.backend.kind, "decode",
                    f"{type(error).__name__}: {error}", "miss",
                )
            )  # fmt: skip

    def _backend_failed(self, error: BackendUnavailable, operation: str, outcome: str) -> None:
        # While the guard's breaker is open every call lands here: the breaker's own
        # transition was the news, so these go to DEBUG rather than flood the log.
        _log.log(
            logging.DEBUG if isinstance(error.__cause__, CircuitOpen) else logging.WARNING,
            "cache %r: backend %s failed on %s: %s; %s",
            self.name, self.backend.kind, operation, error, outcome,
        )  # fmt: skip
        if self.events.listeners:
            cause = error.__cause__ or error
            self.events.publish(
                BackendFailure(
                    self.component, self.backend.kind, operation,
                    f"{type(cause).__name__}: {cause}", outcome,
                )
            )  # fmt: skip
