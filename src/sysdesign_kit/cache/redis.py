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
import math
from collections.abc import Sequence
from importlib import resources
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
from sysdesign_kit.errors import ConfigurationError, InvalidInput

__all__ = ["READ_SCRIPT", "WRITE_SCRIPT", "RedisBackend"]


def _script(name: str) -> Script:
    source = (resources.files("sysdesign_kit.cache") / "lua" / f"{name}.lua").read_text("utf-8")
    return Script(source, name=f"cache {name}")


#: Reads or deletes one entry, checking its namespace and tag versions (``lua/read.lua``).
READ_SCRIPT = _script("read")
#: Stores one entry stamped with the current versions (``lua/write.lua``).
WRITE_SCRIPT = _script("write")

_GET = b"g"
_DELETE = b"d"
_OPTIONS = frozenset({"prefix"})
#: Idle asyncio connections kept per event loop; more are closed when given back.
_MAX_IDLE = 32


def _escape(part: str) -> str:
    # The same escaping as KeySpace gives its parts, for the parts used as a hash tag.
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def _ttl_ms(ttl: float) -> bytes:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        raise InvalidInput(f"ttl must be > 0 and finite seconds, got {ttl!r}")
    # Rounded up: an entry never expires before the TTL it was given.
    return b"%d" % max(1, math.ceil(ttl * 1000))


class _Idle:
    """Idle asyncio connections of one event loop, taken and put back per script call.

    redis-py's asyncio pool takes a lock, records metrics and dispatches events on every
    get and release, which on a local network is a sizeable share of a cache hit. This keeps
    connections in a list (no await between pop and use); a connection that failed, or whose
    call was cancelled half way, is closed instead of being put back.
    """

    __slots__ = ("connect_timeout", "idle", "location", "make", "timeout")

    def __init__(self, make: Any, timeout: float, connect_timeout: float, location: str) -> None:
        self.make = make
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.location = location
        self.idle: list[AbstractConnection] = []

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

    async def _call(self, command: bytes) -> Any:
        try:
            conn = self.idle.pop()
        except IndexError:
            return await self._send(self.make(), command, fresh=True)
        try:
            return await self._send(conn, command, fresh=False)
        except (redis.ConnectionError, ConnectionError, EOFError):
            # Closed by the server while idle (restart, idle timeout): once more, on a new one.
            return await self._send(self.make(), command, fresh=True)

    async def _send(self, conn: AbstractConnection, command: bytes, *, fresh: bool) -> Any:
        try:
            if fresh:
                # The handshake (AUTH, SELECT, HELLO) reads replies too: bound it all.
                async with asyncio.timeout(self.connect_timeout):
                    await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_packed_command(command, check_health=False)
            reply = await conn.read_response(timeout=self.timeout)
        except ResponseError:
            self._put_back(conn)
            raise
        except BaseException:
            # It may be half way through a reply: never use it again.
            await conn.disconnect(nowait=True)
            raise
        self._put_back(conn)
        return reply

    def _put_back(self, conn: AbstractConnection) -> None:
        if len(self.idle) < _MAX_IDLE:
            self.idle.append(conn)
        else:
            # Not awaited: closing the transport is enough, and it never blocks.
            conn._close()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        while self.idle:
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

    Raises:
        ConfigurationError: a bad prefix or settings of the wrong kind.
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
    ) -> None:
        if settings is not None and not isinstance(settings, RedisSettings):
            raise ConfigurationError(f"settings must be RedisSettings, got {settings!r}")
        self.settings = settings or RedisSettings()
        self.keys = KeySpace(prefix)
        self._owns_client = client is None
        self.client: redis.Redis = client if client is not None else sync_client(self.settings)
        #: The blocking API's connections (made by ``client``'s pool).
        self.connections = Connections(self.client)
        self._given_async = async_client
        self._aclients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}
        self._last: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)
        self._make_connection = async_connection_factory(async_client or self.settings)
        self._wires: dict[asyncio.AbstractEventLoop, _Idle] = {}
        self._last_wire: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """A backend for ``redis://``, ``rediss://`` or ``unix://`` URLs.

        ``options`` are ``prefix`` plus connection overrides such as ``socket_timeout=0.1``
        (see `parse_redis_url`).

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
        WRITE_SCRIPT.run(self.connections, keys, (bytes(data), _ttl_ms(ttl)))

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

    def _wire(self) -> _Idle:
        # The scripts' connections of the running loop (see `_Idle`).
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
                )
            self._last_wire = (loop, wire)
        return wire  # type: ignore[no-any-return]

    async def aget(self, namespace: str, key: str) -> bytes | None:
        """`get`, awaitable."""
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        reply: bytes | None = await self._wire().run(READ_SCRIPT, keys, (_GET,))
        return reply

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`, awaitable."""
        keys = self._write_keys(namespace, key, tags)
        await self._wire().run(WRITE_SCRIPT, keys, (bytes(data), _ttl_ms(ttl)))

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`, awaitable."""
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        return bool(await self._wire().run(READ_SCRIPT, keys, (_DELETE,)))

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
