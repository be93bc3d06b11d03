"""``ResponseCacheMiddleware``: a shared (edge/CDN-style) HTTP cache as pure ASGI middleware.

Per GET or HEAD request it looks for a stored response under the request's key (host, path,
query, and the values of the fields the stored response ``Vary``\\ s on) and either answers
from it (with ``Age``, or a ``304`` for a matching ``If-None-Match`` / ``If-Modified-Since``),
or calls the app and stores the response when RFC 9111 lets a shared cache do so. The rules
themselves live in `sysdesign_kit.cache.http_policy`; this module does the plumbing.

Stale responses (RFC 5861): within ``stale-while-revalidate`` the stored response answers at
once and the app is called again in the background to refresh it; within
``stale-if-error`` the app is called and, if it raises or answers 5xx, the stored response
answers instead.

The response is never held back for the cache's sake: each body chunk goes to the client as
the app sends it, and a copy is kept only until ``max_body_bytes``; past that the response
simply is not stored. A backend that fails costs a miss or an unstored response, never a
500.

Unsafe requests (POST, PUT, PATCH, DELETE) that succeed invalidate the stored responses of
their URL (RFC 9111 4.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, MutableMapping
from typing import Any, Literal

import msgspec

from sysdesign_kit.breaker import CircuitBreaker
from sysdesign_kit.cache.backend import CacheBackend
from sysdesign_kit.cache.guarded import guarded
from sysdesign_kit.cache.http_policy import (
    DEFAULT_CACHEABLE_STATUSES,
    RequestPolicy,
    etag_matches,
    not_modified_since,
    request_policy,
    response_policy,
)
from sysdesign_kit.cache.memory import MemoryBackend
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import CacheAccessed, Listener, Publisher
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ResponseCacheMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KeyFunction = Callable[[Scope], str | None]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024

_log = logging.getLogger("sysdesign_kit.cache")
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Fields a 304 carries over from the stored response (RFC 9110 15.4.5).
_NOT_MODIFIED_FIELDS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"last-modified", b"vary"}
)
# Fields of the app's response that describe one connection, not the stored response.
_HOP_BY_HOP = frozenset({b"age", b"connection", b"keep-alive", b"transfer-encoding"})
_Outcome = Literal["hit", "miss", "stale", "coalesced"]


class _Stored(msgspec.Struct, array_like=True, tag=1):
    """One stored response; times are wall-clock seconds (shared backends share them)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float
    initial_age: float
    lifetime: float
    swr: float
    sie: float
    immutable: bool


class _Variants(msgspec.Struct, array_like=True, tag=2):
    """Stored under the URL's key when responses vary: the request fields they vary on."""

    vary: list[str]


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Stored | _Variants).decode


def _fields(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Field lines as ``{lower-cased name: values joined with ", "}`` (latin-1, as ASGI)."""
    fields: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    return fields


def _default_key(scope: Scope, fields: dict[str, str]) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{fields.get('host', '')}{scope.get('root_path', '')}{scope.get('path', '')}?{query}"


class ResponseCacheMiddleware:
    """Cache GET (and HEAD) responses the way a shared cache in front of the app would.

    Args:
        app: the ASGI app whose responses are cached.
        backend: where responses are stored; a `MemoryBackend` on ``clock`` by default.
        namespace: the backend namespace (``bump`` it to drop every stored response).
        clock: whose wall time (``time()``) ages stored responses.
        max_body_bytes: the largest body stored; larger responses stream through unstored.
        key: ``key(scope)`` -> the cache key of a request, or None not to use the cache for
            it. The default is host, path and query string.
        cache_authorized: use the cache for requests carrying ``Authorization`` too. Only
            with a ``key`` that includes the caller's identity (a shared key would hand one
            user's response to another), so it requires ``key``.
        cacheable_statuses: statuses stored when the response gives explicit freshness.
        heuristic_fraction: give responses without explicit freshness but with
            ``Last-Modified`` this fraction of their age as lifetime (RFC 9111 4.2.2; 0.1 is
            usual). None (the default) stores only explicitly fresh responses.
        coalesce: let concurrent misses on one key wait for the first one's response
            instead of all calling the app (request collapsing). They are let go as soon as
            that response shows it will not be stored (at its start, or when its body
            outgrows ``max_body_bytes``), and then call the app themselves.
        name: names this cache in events.
        guard: put a backend that does I/O behind a circuit breaker, as `Cache` does
            (True: the default breaker; False: bare; or a `CircuitBreaker`).
        listeners: callables receiving `CacheAccessed` events (``hit``, ``miss``,
            ``stale``, ``coalesced``).

    Raises:
        ConfigurationError: a backend that is not a `CacheBackend`, a bad size or fraction,
            or ``cache_authorized`` without ``key``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        backend: CacheBackend | None = None,
        namespace: str = "http",
        clock: Clock = SYSTEM_CLOCK,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        key: KeyFunction | None = None,
        cache_authorized: bool = False,
        cacheable_statuses: Collection[int] = DEFAULT_CACHEABLE_STATUSES,
        heuristic_fraction: float | None = None,
        coalesce: bool = True,
        name: str = "http",
        guard: bool | CircuitBreaker = True,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if not isinstance(clock, Clock):
            raise ConfigurationError(f"clock must be a Clock, got {clock!r}")
        listeners = tuple(listeners)
        if backend is None:
            backend = MemoryBackend(clock=clock)
        elif not isinstance(backend, CacheBackend):
            raise ConfigurationError(f"backend must be a CacheBackend, got {backend!r}")
        backend = guarded(backend, guard, clock=clock, listeners=listeners)
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"namespace must be a non-empty str, got {namespace!r}")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ConfigurationError(f"max_body_bytes must be an int, got {max_body_bytes!r}")
        if max_body_bytes < 0:
            raise ConfigurationError(f"max_body_bytes must be >= 0, got {max_body_bytes}")
        if key is not None and not callable(key):
            raise ConfigurationError(f"key must be a callable, got {key!r}")
        if cache_authorized and key is None:
            raise ConfigurationError(
                "cache_authorized=True needs a key function that includes the caller's "
                "identity: with the default key one user's response would answer another"
            )
        statuses = frozenset(cacheable_statuses)
        for status in statuses:
            if isinstance(status, bool) or not isinstance(status, int):
                raise ConfigurationError(f"cacheable status {status!r} is not an int")
            if not 200 <= status <= 599:
                raise ConfigurationError(f"cacheable status {status} is not a final status")
        if heuristic_fraction is not None and (
            isinstance(heuristic_fraction, bool)
            or not isinstance(heuristic_fraction, int | float)
            or not 0 < heuristic_fraction <= 1
        ):
            raise ConfigurationError(
                f"heuristic_fraction must be None or in (0, 1], got {heuristic_fraction!r}"
            )
        self.app = app
        self.backend = backend
        self.namespace = namespace
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.key = key
        self.cache_authorized = cache_authorized
        self.cacheable_statuses = statuses
        self.heuristic_fraction = heuristic_fraction
        self.coalesce = coalesce
        self.name = name
        self.component = f"http_cache:{name}"
        self.events = Publisher(listeners)
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: dict[str, asyncio.Event] = {}

    def __repr__(self) -> str:
        return (
            f"ResponseCacheMiddleware(name={self.name!r}, backend={self.backend.kind!r}, "
            f"max_body_bytes={self.max_body_bytes})"
        )

    async def wait_refreshes(self) -> None:
        """Wait until the background refreshes started so far have finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the request path -----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            if method in _UNSAFE:
                await self._forward_unsafe(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        fields = _fields(scope.get("headers", ()))
        key = self._key(scope, fields)
        if key is None:
            await self.app(scope, receive, send)
            return
        timeline = scope.get(TIMELINE_SCOPE_KEY)
        started = Timeline.now() if timeline is not None else 0.0
        asks = request_policy(fields)
        stored, variant_key = await self._lookup(key, fields)
        now = self.clock.time()
        outcome, age, stale_if_error = self._judge(stored, asks, now)
        if (
            outcome == "miss"
            and stale_if_error is None
            and self.coalesce
            and asks.store
            and method == "GET"
        ):
            leading = self._inflight.get(variant_key)
            if leading is not None:
                await leading.wait()
                stored, variant_key = await self._lookup(key, fields)
                now = self.clock.time()
                outcome, age, stale_if_error = self._judge(stored, asks, now)
                if outcome == "hit":
                    outcome = "coalesced"
                elif outcome == "stale":
                    outcome = "miss"  # no second refresh: go to the app like a miss
            else:
                release = asyncio.Event()
                self._inflight[variant_key] = release
                try:
                    await self._miss(
                        scope, receive, send, fields, key, asks.store, None, now, timeline,
                        started, release,
                    )  # fmt: skip
                finally:
                    release.set()
                    if self._inflight.get(variant_key) is release:
                        del self._inflight[variant_key]
                return
        if outcome != "miss" and stored is not None:
            if outcome == "stale":
                self._refresh(scope, variant_key)
            self._publish(outcome)
            await self._answer(scope, fields, send, stored, age)
            if timeline is not None:
                timeline.since("cache", started)
            return
        # A HEAD response has no body to store; a later GET fills the cache.
        await self._miss(
            scope, receive, send, fields, key, asks.store and method == "GET", stale_if_error,
            now, timeline, started, None,
        )  # fmt: skip

    async def _miss(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        fields: dict[str, str],
        key: str,
        store: bool,
        stale_if_error: _Stored | None,
        now: float,
        timeline: Timeline | None,
        started: float,
        release: asyncio.Event | None,
    ) -> None:
        if stale_if_error is None:
            # With a stale-if-error fallback the outcome is known only once the app answers.
            self._publish("miss")
        if timeline is not None:
            timeline.since("cache", started)
        await self._forward(scope, receive, send, fields, key, store, stale_if_error, now, release)

    def _judge(
        self, stored: _Stored | None, asks: RequestPolicy, now: float
    ) -> tuple[_Outcome, float, _Stored | None]:
        """How a stored response may answer: ``(outcome, its age, stale-if-error fallback)``."""
        if stored is None:
            return "miss", 0.0, None
        age = stored.initial_age + max(0.0, now - stored.stored_at)
        fresh_for = stored.lifetime - age
        acceptable = asks.use_stored and (asks.max_age is None or age <= asks.max_age)
        if stored.immutable and fresh_for > 0:
            acceptable = True  # RFC 8246: fresh and immutable needs no revalidation
        if acceptable and fresh_for > asks.min_fresh:
            return "hit", age, None
        if acceptable and fresh_for <= 0 and -fresh_for < stored.swr:
            return "stale", age, None
        if asks.use_stored and -fresh_for < stored.sie:
            return "miss", age, stored
        return "miss", age, None

    def _key(self, scope: Scope, fields: dict[str, str], *, reading: bool = True) -> str | None:
        if reading and "authorization" in fields and not self.cache_authorized:
            return None
        if self.key is None:
            return _default_key(scope, fields)
        try:
            return self.key(scope)
        except Exception:
            _log.exception("response cache key function raised; not using the cache")
            return None

    @staticmethod
    def _variant(key: str, vary: Iterable[str], fields: dict[str, str]) -> str:
        parts = [key]
        for name in vary:
            value = fields.get(name)
            # Absent and empty differ: "\x00" cannot appear in a field value.
            parts.append("\x00" if value is None else " ".join(value.split()))
        return "\x01".join(parts)

    async def _lookup(self, key: str, fields: dict[str, str]) -> tuple[_Stored | None, str]:
        item = await self._get(key)
        if isinstance(item, _Variants):
            variant = self._variant(key, item.vary, fields)
            found = await self._get(variant)
            return (found if isinstance(found, _Stored) else None), variant
        return item, key

    async def _get(self, key: str) -> _Stored | _Variants | None:
        backend = self.backend
        try:
            data = (
                backend.get(self.namespace, key)
                if backend.local
                else await backend.aget(self.namespace, key)
            )
            return None if data is None else _decode(data)
        except Exception:
            _log.warning("response cache read failed; answering as a miss", exc_info=True)
            return None

    async def _set(self, key: str, item: _Stored | _Variants, ttl: float) -> None:
        backend = self.backend
        data = _encode(item)
        try:
            if backend.local:
                backend.set(self.namespace, key, data, ttl)
            else:
                await backend.aset(self.namespace, key, data, ttl)
        except Exception:
            _log.warning("response cache write failed; response not stored", exc_info=True)

    async def _delete(self, key: str) -> None:
        backend = self.backend
        try:
            if backend.local:
                backend.delete(self.namespace, key)
            else:
                await backend.adelete(self.namespace, key)
        except Exception:
            _log.warning("response cache delete failed", exc_info=True)

    def _publish(self, outcome: _Outcome) -> None:
        if self.events.listeners:
            self.events.publish(CacheAccessed(self.component, self.name, outcome))

    # -- answering from a stored response -------------------------------------------------

    async def _answer(
        self, scope: Scope, fields: dict[str, str], send: Send, stored: _Stored, age: float
    ) -> None:
        age_field = (b"age", str(int(age)).encode())
        if self._not_modified(fields, stored):
            headers = [(k, v) for k, v in stored.headers if k in _NOT_MODIFIED_FIELDS]
            await send(
                {"type": "http.response.start", "status": 304, "headers": [*headers, age_field]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {
                "type": "http.response.start",
                "status": stored.status,
                "headers": [*stored.headers, age_field],
            }
        )
        body = b"" if scope.get("method") == "HEAD" else stored.body
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _not_modified(fields: dict[str, str], stored: _Stored) -> bool:
        if stored.status != 200:
            return False
        headers = dict(stored.headers)
        if "if-none-match" in fields:
            etag = headers.get(b"etag")
            return etag_matches(
                fields["if-none-match"], None if etag is None else etag.decode("latin-1")
            )
        if "if-modified-since" in fields:
            modified = headers.get(b"last-modified")
            return not_modified_since(
                fields["if-modified-since"],
                None if modified is None else modified.decode("latin-1"),
            )
        return False

    # -- calling the app ------------------------------------------------------------------

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        fields: dict[str, str],
        key: str,
        store: bool,
        fallback: _Stored | None,
        request_time: float,
        release: asyncio.Event | None = None,
    ) -> None:
        recorder = _Recorder(send, self.max_body_bytes if store else -1, fallback is not None)
        if release is not None:
            recorder.release = release
            recorder.judge = self._storable
        try:
            await self.app(scope, receive, recorder)
        except Exception:
            if fallback is None or recorder.started:
                if fallback is not None:
                    self._publish("miss")
                raise
            _log.warning("app raised; answering with a stale response (stale-if-error)")
            await self._serve_fallback(scope, fields, send, fallback)
            return
        if fallback is not None:
            if recorder.held is not None:
                await self._serve_fallback(scope, fields, send, fallback)
                return
            self._publish("miss")
        if recorder.complete and recorder.body is not None:
            await self._store(key, fields, recorder, request_time)

    def _storable(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        return response_policy(
            status,
            _fields(headers),
            now=self.clock.time(),
            cacheable_statuses=self.cacheable_statuses,
            heuristic_fraction=self.heuristic_fraction,
        ).storable

    async def _serve_fallback(
        self, scope: Scope, fields: dict[str, str], send: Send, stored: _Stored
    ) -> None:
        self._publish("stale")
        age = stored.initial_age + max(0.0, self.clock.time() - stored.stored_at)
        await self._answer(scope, fields, send, stored, age)

    async def _store(
        self, key: str, fields: dict[str, str], recorder: _Recorder, request_time: float
    ) -> None:
        response_time = self.clock.time()
        headers = [(k.lower(), v) for k, v in recorder.headers if k.lower() not in _HOP_BY_HOP]
        policy = response_policy(
            recorder.status,
            _fields(recorder.headers),
            now=response_time,
            request_time=request_time,
            cacheable_statuses=self.cacheable_statuses,
            heuristic_fraction=self.heuristic_fraction,
        )
        if not policy.storable:
            return
        ttl = (
            policy.lifetime
            - policy.initial_age
            + max(policy.stale_while_revalidate, policy.stale_if_error)
        )
        entry = _Stored(
            recorder.status,
            headers,
            bytes(recorder.body or b""),
            response_time,
            policy.initial_age,
            policy.lifetime,
            policy.stale_while_revalidate,
            policy.stale_if_error,
            policy.immutable,
        )
        if policy.vary:
            await self._set(key, _Variants(list(policy.vary)), ttl)
            await self._set(self._variant(key, policy.vary, fields), entry, ttl)
        else:
            await self._set(key, entry, ttl)

    async def _forward_unsafe(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, noting_status)
        if 200 <= status < 400:
            # An authorised writer still invalidates what everyone else reads.
            key = self._key(scope, _fields(scope.get("headers", ())), reading=False)
            if key is not None:
                await self._delete(key)

    # -- stale-while-revalidate -----------------------------------------------------------

    def _refresh(self, scope: Scope, key: str) -> None:
        if key in self._refreshing:
            return
        self._refreshing.add(key)
        # Copied now: the client's request may change its scope once the answer is sent.
        request = dict(scope)
        if isinstance(request.get("state"), dict):
            request["state"] = dict(request["state"])
        task = asyncio.get_running_loop().create_task(self._run_refresh(request, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_refresh(self, request: Scope, key: str) -> None:
        request["method"] = "GET"
        # The refresh must not carry the client's conditions: it needs a full response.
        request["headers"] = [
            (k, v)
            for k, v in request.get("headers", ())
            if k.lower() not in (b"if-none-match", b"if-modified-since")
        ]
        request.pop(TIMELINE_SCOPE_KEY, None)
        sent = False
        never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await never  # stays connected until the response is done

        async def discard(message: Message) -> None:
            return None

        fields = _fields(request["headers"])
        base_key = self._key(request, fields)
        recorder = _Recorder(discard, self.max_body_bytes, False)
        try:
            await self.app(request, receive, recorder)
            if base_key is not None and recorder.complete and recorder.body is not None:
                await self._store(base_key, fields, recorder, self.clock.time())
        except Exception:
            _log.warning("background refresh of a stale response failed", exc_info=True)
        finally:
            never.cancel()
            self._refreshing.discard(key)


class _Recorder:
    """The app's ``send``: passes messages on at once, keeping a copy of the response while
    it stays under ``limit`` bytes (-1: keep nothing).

    With ``hold_errors``, a 5xx response is held back (not sent) so a stale response can
    answer instead; ``held`` is then its start message.
    """

    __slots__ = (
        "body",
        "complete",
        "headers",
        "held",
        "hold_errors",
        "judge",
        "limit",
        "release",
        "send",
        "started",
        "status",
    )

    def __init__(self, send: Send, limit: int, hold_errors: bool) -> None:
        self.send = send
        self.limit = limit
        self.hold_errors = hold_errors
        self.body: bytearray | None = bytearray() if limit >= 0 else None
        self.headers: list[tuple[bytes, bytes]] = []
        self.held: Message | None = None
        self.status = 0
        self.started = False
        self.complete = False
        # Set for a coalescing leader: waiters are let go once nothing will be stored.
        self.judge: Callable[[int, list[tuple[bytes, bytes]]], bool] | None = None
        self.release: asyncio.Event | None = None

    def _give_up(self) -> None:
        self.body = None
        if self.release is not None:
            self.release.set()

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            if self.hold_errors and self.status >= 500:
                self.held = message
                self.body = None
                return
            self.started = True
            judge = self.judge
            if self.body is not None and judge is not None and not judge(self.status, self.headers):
                self._give_up()
        elif kind == "http.response.body":
            if self.held is not None:
                return  # the stale response answers instead
            body = self.body
            if body is not None:
                chunk = message.get("body", b"")
                if len(body) + len(chunk) > self.limit:
                    self._give_up()  # too large to store: stream on, keep nothing
                else:
                    body += chunk
            if not message.get("more_body", False):
                self.complete = True
        await self.send(message)
