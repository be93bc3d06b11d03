"""`RedisBackend`: cache entries in Redis, shared by every process that names the same server.

Keys (``prefix`` defaults to ``"sdk"``; parts escaped as `KeySpace` does, so ``:``, ``{``
and ``}`` in a namespace, key or tag never split a name)::

    {prefix}:c:e:{key}:{{namespace}}   the entry: a hash (d = bytes, v = namespace version,
                                       t:<tag version key> = that tag's version), PX = TTL
    {prefix}:c:v:{{namespace}}         the namespace version (INCR by `bump`)
    {prefix}:c:t:{{tag}}               a tag's version (INCR by `invalidate_tags`)

The namespace is the ``{hash tag}``, so an entry and its namespace version live in one
Cluster slot. An entry records the tag versions it was written under; a read compares them
with the current ones inside the same script, so invalidating a tag is one INCR, whatever
number of entries carry it.

Round trips: `get`, `set` and `delete` one EVALSHA each (``read.lua``, ``write.lua``; the
script's source is sent once more after NOSCRIPT); `version` one GET; `bump` one INCR;
`invalidate_tags` one pipeline of INCRs. Any driver failure (refused, timeout, wrong type,
script error) raises `BackendUnavailable` with the driver's exception as ``__cause__``.

The blocking scripts go through the project's `Connections`; the coroutines' scripts through
idle connections of the running event loop kept here (`_Idle`), which skips the asyncio
pool's per-call lock, metrics and events: a hit costs about what a raw ``GET`` does.

The pure-Python twin of both scripts is `sysdesign_kit.cache.redis_twin`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

from sysdesign_kit.backends.redis import (
    REDIS_ERRORS,
    Connections,
    KeySpace,
    RedisSettings,
    Script,
    async_client,
    async_connection_factory,
    backend_error,
    pack,
    parse_redis_url,
    sync_client,
)
from sysdesign_kit.cache.redis_lock import DEFAULT_LOCK_TTL, RedisLoadLock
from sysdesign_kit.cache.redis_scripts import READ_SCRIPT, WRITE_SCRIPT
from sysdesign_kit.errors import ConfigurationError, InvalidInput

__all__ = ["READ_SCRIPT", "WRITE_SCRIPT", "RedisBackend"]


_GET = b"g"
_DELETE = b"d"
_OPTIONS = frozenset({"prefix", "lock_ttl", "pool_timeout"})
#: Idle asyncio connections kept per event loop; more are closed when given back.
_MAX_IDLE = 32
#: Connections a backend opens at most, per event loop and for its blocking client.
DEFAULT_MAX_CONNECTIONS = 64
#: Seconds a caller waits for a busy connection before the backend counts as unavailable.
DEFAULT_POOL_TIMEOUT = 1.0


def _escape(part: str) -> str:
    # The same escaping as KeySpace gives its parts, for the parts used as a hash tag.
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def ttl_ms(ttl: float) -> bytes:
    """An entry's TTL as Redis's milliseconds (rounded up).

    Raises:
        InvalidInput: ``ttl`` not > 0 and finite.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        raise InvalidInput(f"ttl must be > 0 and finite seconds, got {ttl!r}")
    # Rounded up: an entry never expires before the TTL it was given.
    return b"%d" % max(1, math.ceil(ttl * 1000))


class _Idle:
    """The asyncio connections of one event loop: at most ``limit`` open, idle ones in a list.

    redis-py's asyncio pool takes a lock, records metrics and dispatches events on every
    get and release, which on a local network is a sizeable share of a cache hit. This keeps
    idle connections in a list (no await between pop and use). When ``limit`` connections
    are open and busy, a caller waits (FIFO) for one to be given back, up to
    ``pool_timeout`` seconds, rather than failing or opening more: a burst of cold keys
    cannot open a thousand sockets. A connection that failed, or whose call was cancelled
    half way, is closed instead of being put back, and its place goes to the next waiter.
    """

    __slots__ = (
        "connect_timeout",
        "idle",
        "limit",
        "location",
        "make",
        "open",
        "pool_timeout",
        "queue",
        "timeout",
    )

    def __init__(
        self,
        make: Any,
        timeout: float,
        connect_timeout: float,
        location: str,
        *,
        limit: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        self.make = make
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.location = location
        self.limit = limit
        self.pool_timeout = pool_timeout
        self.idle: list[AbstractConnection] = []
        #: Connections made and not yet closed (idle or in use).
        self.open = 0
        self.queue: collections.deque[asyncio.Future[AbstractConnection | None]] = (
            collections.deque()
        )

    async def run(self, script: Script, keys: Sequence[bytes], args: Sequence[bytes]) -> Any:
        numkeys = b"%d" % len(keys)
        try:
            try:
                return await self._call(pack(b"EVALSHA", script.sha_bytes, numkeys, *keys, *args))
            except NoScriptError:
                source = script.source.encode("utf-8")
                return await self._call(pack(b"EVAL", source, numkeys, *keys, *args))
        except REDIS_ERRORS as exc:
            raise backend_error(exc, f"script {script.name}", self.location) from exc

    async def block(self, command: bytes, wait: float, what: str) -> Any:
        """Send a blocking command (BLPOP...) that may take ``wait`` seconds to answer."""
        try:
            return await self._call(command, self.timeout + wait)
        except REDIS_ERRORS as exc:
            raise backend_error(exc, what, self.location) from exc

    async def _call(self, command: bytes, read_timeout: float | None = None) -> Any:
        conn = self.idle.pop() if self.idle else await self._take()
        if not conn.is_connected:
            return await self._send(conn, command, read_timeout)
        try:
            return await self._send(conn, command, read_timeout)
        except (redis.ConnectionError, ConnectionError, EOFError):
            # Closed by the server while idle (restart, idle timeout): once more, on a new one.
            return await self._send(await self._take(), command, read_timeout)

    async def _take(self) -> AbstractConnection:
        """A new connection if under the limit, else the next one given back."""
        if self.open < self.limit:
            self.open += 1
            return self.make()  # type: ignore[no-any-return]
        waiter: asyncio.Future[AbstractConnection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.queue.append(waiter)
        try:
            async with asyncio.timeout(self.pool_timeout):
                conn = await waiter
        except TimeoutError:
            self._abandon(waiter)
            raise redis.ConnectionError(
                f"all {self.limit} connections busy for {self.pool_timeout} s"
            ) from None
        except BaseException:
            self._abandon(waiter)
            raise
        if conn is None:  # a closed connection's place
            self.open += 1
            return self.make()  # type: ignore[no-any-return]
        return conn

    async def _send(
        self, conn: AbstractConnection, command: bytes, read_timeout: float | None
    ) -> Any:
        try:
            if not conn.is_connected:
                # The handshake (AUTH, SELECT, HELLO) reads replies too: bound it all.
                async with asyncio.timeout(self.connect_timeout):
                    await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_packed_command(command, check_health=False)
            # Bounded here: given timeout=, redis-py answers None on expiry instead of
            # raising, and the connection would be left one reply behind.
            async with asyncio.timeout(read_timeout or self.timeout):
                reply = await conn.read_response()
        except ResponseError:
            self._give(conn)
            raise
        except BaseException:
            # It may be half way through a reply: never use it again.
            self._close(conn)
            raise
        self._give(conn)
        return reply

    def _give(self, conn: AbstractConnection | None) -> None:
        """Hand ``conn`` (or, None, a closed one's place) to the first waiter, else keep it."""
        while self.queue:
            waiter = self.queue.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            return
        if len(self.idle) < _MAX_IDLE:
            self.idle.append(conn)
        else:
            self._close(conn)

    def _abandon(self, waiter: asyncio.Future[AbstractConnection | None]) -> None:
        if waiter.done() and not waiter.cancelled():
            # Handed over just as its caller gave up: to the next one.
            self._give(waiter.result())
        else:
            waiter.cancel()

    def _close(self, conn: AbstractConnection) -> None:
        # Not awaited: closing the transport is enough, and it never blocks.
        conn._close()  # type: ignore[no-untyped-call]
        self.open -= 1
        if self.queue:
            self._give(None)  # its place: the waiter that gets it makes one (see `_take`)

    async def aclose(self) -> None:
        while self.idle:
            self.open -= 1
            await self.idle.pop().disconnect()


class RedisBackend:
    """A `CacheBackend` over a Redis server (sync and asyncio clients).

    Args:
        settings: where to connect (see `parse_redis_url`); default ``localhost:6379/0``.
        client: a ready blocking client instead of one made from ``settings`` (not closed by
            `close`).
        async_client: a ready asyncio client, used on every event loop (not closed by
            `aclose`); by default each loop gets a client of its own made from ``settings``.
        prefix: key namespace (see `KeySpace`).
        lock_ttl: seconds a cross-process load lock lives unless released (see
            `load_lock`): above the slowest load you expect.
        max_connections: connections open at most per event loop, and for the blocking
            client (default: the settings' ``max_connections``, else 64). Callers beyond
            it wait for a free one.
        pool_timeout: seconds a caller waits for a free connection before the call fails
            as `BackendUnavailable` (and the cache loads instead).

    Raises:
        ConfigurationError: a bad prefix, ``lock_ttl`` or settings of the wrong kind.
    """

    kind = "redis"
    local = False

    def __init__(
        self,
        settings: RedisSettings | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        prefix: str = "sdk",
        lock_ttl: float = DEFAULT_LOCK_TTL,
        max_connections: int | None = None,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        if settings is not None and not isinstance(settings, RedisSettings):
            raise ConfigurationError(f"settings must be RedisSettings, got {settings!r}")
        settings = settings or RedisSettings()
        limit = max_connections
        if limit is None:
            limit = settings.max_connections or DEFAULT_MAX_CONNECTIONS
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"max_connections must be an int >= 1, got {limit!r}")
        if (
            isinstance(pool_timeout, bool)
            or not isinstance(pool_timeout, int | float)
            or not 0 < pool_timeout < math.inf
        ):
            raise ConfigurationError(f"pool_timeout must be > 0 seconds, got {pool_timeout!r}")
        self.settings = dataclasses.replace(settings, max_connections=limit)
        self.pool_timeout = float(pool_timeout)
        self.keys = KeySpace(prefix)
        self._owns_client = client is None
        self.client: redis.Redis = client if client is not None else sync_client(self.settings)
        #: The blocking API's connections (made by ``client``'s pool).
        self.connections = Connections(self.client, wait=self.pool_timeout)
        self._given_async = async_client
        self._aclients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}
        self._last: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)
        self._make_connection = async_connection_factory(async_client or self.settings)
        self._wires: dict[asyncio.AbstractEventLoop, _Idle] = {}
        self._last_wire: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)
        #: One loader per key across every process on this server (`Cache` uses it).
        self.load_lock = RedisLoadLock(self, ttl=lock_ttl)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """A backend for ``redis://``, ``rediss://`` or ``unix://`` URLs.

        ``options`` are ``prefix``, ``lock_ttl`` and ``pool_timeout`` plus connection
        overrides such as ``socket_timeout=0.1`` (see `parse_redis_url`).

        Raises:
            ConfigurationError: a malformed URL or an unknown or invalid option.
        """
        own = {name: options.pop(name) for name in list(options) if name in _OPTIONS}
        return cls(parse_redis_url(url, **options), **own)

    def __repr__(self) -> str:
        return f"RedisBackend({self.settings.location!r}, prefix={self.keys.prefix!r})"

    # -- key names --------------------------------------------------------------------------

    def entry_key(self, namespace: str, key: str) -> bytes:
        """The entry's key name."""
        return self.keys.key("c", "e", key, tag=_escape(namespace)).encode()

    def hash_tag(self, namespace: str) -> str:
        """The ``{hash tag}`` of the namespace's keys (one Cluster slot per namespace)."""
        return _escape(namespace)

    def version_key(self, namespace: str) -> bytes:
        """The namespace version's key name."""
        return self.keys.key("c", "v", tag=_escape(namespace)).encode()

    def tag_key(self, tag: str) -> bytes:
        """A tag version's key name."""
        return self.keys.key("c", "t", tag=_escape(tag)).encode()

    def _write_keys(self, namespace: str, key: str, tags: Sequence[str]) -> list[bytes]:
        keys = [self.entry_key(namespace, key), self.version_key(namespace)]
        keys.extend(self.tag_key(tag) for tag in dict.fromkeys(tags))
        return keys

    # -- blocking ---------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> bytes | None:
        """The live bytes under ``key``, or None (one EVALSHA).

        Raises:
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        reply: bytes | None = READ_SCRIPT.run(self.connections, keys, (_GET,))
        return reply

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """Store ``data`` for ``ttl`` seconds, carrying ``tags`` (one EVALSHA).

        Raises:
            InvalidInput: ``ttl`` not a positive finite number.
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        keys = self._write_keys(namespace, key, tags)
        WRITE_SCRIPT.run(self.connections, keys, (bytes(data), ttl_ms(ttl)))

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``key``; whether a live entry was there (one EVALSHA).

        Raises:
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        return bool(READ_SCRIPT.run(self.connections, keys, (_DELETE,)))

    def version(self, namespace: str) -> int:
        """The namespace's current version (one GET).

        Raises:
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        return int(self._call(b"GET", self.version_key(namespace)) or 0)

    def bump(self, namespace: str) -> int:
        """Make every entry of ``namespace`` unreadable; the new version (one INCR).

        Raises:
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        return int(self._call(b"INCR", self.version_key(namespace)))

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        """Make every entry carrying one of ``tags`` unreadable (one pipeline of INCRs).

        Raises:
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        names = [self.tag_key(tag) for tag in dict.fromkeys(tags)]
        if not names:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.execute_command("INCR", name)  # type: ignore[no-untyped-call]
            pipe.execute()
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "INCR", self.settings.location) from exc

    def _call(self, *args: bytes) -> Any:
        try:
            return self.connections.call(pack(*args))
        except REDIS_ERRORS as exc:
            raise backend_error(exc, args[0].decode(), self.settings.location) from exc

    def close(self) -> None:
        """Close the blocking client (if this backend made it)."""
        self.load_lock.close()
        self.connections.close()
        if self._owns_client:
            self.client.close()

    # -- asyncio ----------------------------------------------------------------------------

    def aclient(self) -> redis.asyncio.Redis:
        """The asyncio client of the running event loop.

        An asyncio connection belongs to the loop that opened it, so each loop gets a client
        of its own (unless one was given); the last one used is kept at hand.
        """
        loop = asyncio.get_running_loop()
        last_loop, last_client = self._last
        if loop is last_loop:
            return last_client  # type: ignore[no-any-return]
        client = self._given_async or self._aclients.get(loop)
        if client is None:
            for gone in [old for old in list(self._aclients) if old.is_closed()]:
                del self._aclients[gone]
            client = self._aclients[loop] = async_client(self.settings)
        self._last = (loop, client)
        return client

    def wire(self) -> _Idle:
        """The running loop's script connections (see `_Idle`; used by `RedisLoadLock`)."""
        loop = asyncio.get_running_loop()
        last_loop, wire = self._last_wire
        if loop is not last_loop:
            wire = self._wires.get(loop)
            if wire is None:
                for gone in [old for old in list(self._wires) if old.is_closed()]:
                    del self._wires[gone]
                wire = self._wires[loop] = _Idle(
                    self._make_connection,
                    self.settings.socket_timeout,
                    self.settings.socket_connect_timeout,
                    self.settings.location,
                    limit=self.settings.max_connections or DEFAULT_MAX_CONNECTIONS,
                    pool_timeout=self.pool_timeout,
                )
            self._last_wire = (loop, wire)
        return wire  # type: ignore[no-any-return]

    async def aget(self, namespace: str, key: str) -> bytes | None:
        """`get`, awaitable."""
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        reply: bytes | None = await self.wire().run(READ_SCRIPT, keys, (_GET,))
        return reply

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`, awaitable."""
        keys = self._write_keys(namespace, key, tags)
        await self.wire().run(WRITE_SCRIPT, keys, (bytes(data), ttl_ms(ttl)))

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`, awaitable."""
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        return bool(await self.wire().run(READ_SCRIPT, keys, (_DELETE,)))

    async def aversion(self, namespace: str) -> int:
        """`version`, awaitable."""
        return int(await self._acall("GET", self.version_key(namespace)) or 0)

    async def abump(self, namespace: str) -> int:
        """`bump`, awaitable."""
        return int(await self._acall("INCR", self.version_key(namespace)))

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        """`invalidate_tags`, awaitable."""
        names = [self.tag_key(tag) for tag in dict.fromkeys(tags)]
        if not names:
            return
        try:
            pipe = self.aclient().pipeline(transaction=False)
            for name in names:
                pipe.execute_command("INCR", name)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "INCR", self.settings.location) from exc

    async def _acall(self, *args: Any) -> Any:
        try:
            return await self.aclient().execute_command(*args)  # type: ignore[no-untyped-call]
        except REDIS_ERRORS as exc:
            raise backend_error(exc, args[0], self.settings.location) from exc

    async def aclose(self) -> None:
        """Close the running loop's asyncio client and the blocking client (those this
        backend made)."""
        loop = asyncio.get_running_loop()
        wire = self._wires.pop(loop, None)
        self._last_wire = (None, None)
        if wire is not None:
            await wire.aclose()
        client = self._aclients.pop(loop, None)
        self._last = (None, None)
        if client is not None:
            await client.aclose()
        self.close()
