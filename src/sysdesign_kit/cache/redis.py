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

from sysdesign_kit.backends.redis import (
    REDIS_ERRORS,
    Connections,
    KeySpace,
    RedisSettings,
    Script,
    async_client,
    backend_error,
    pack,
    parse_redis_url,
    sync_client,
)
from sysdesign_kit.errors import ConfigurationError

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


def _escape(part: str) -> str:
    # The same escaping as KeySpace gives its parts, for the parts used as a hash tag.
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def _ttl_ms(ttl: float) -> bytes:
    # Rounded up: an entry never expires before the TTL it was given.
    return b"%d" % max(1, math.ceil(ttl * 1000))


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

    async def aget(self, namespace: str, key: str) -> bytes | None:
        """`get`, awaitable."""
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        reply: bytes | None = await READ_SCRIPT.acall(self.aclient(), keys, (_GET,))
        return reply

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`, awaitable."""
        keys = self._write_keys(namespace, key, tags)
        await WRITE_SCRIPT.acall(self.aclient(), keys, (bytes(data), _ttl_ms(ttl)))

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`, awaitable."""
        keys = (self.entry_key(namespace, key), self.version_key(namespace))
        return bool(await READ_SCRIPT.acall(self.aclient(), keys, (_DELETE,)))

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
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        self._last = (None, None)
        if client is not None:
            await client.aclose()
        self.close()
