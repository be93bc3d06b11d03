"""`TwoLevelBackend`: a `MemoryBackend` in front of a `RedisBackend`, kept coherent by
invalidation messages over Redis pub/sub.

::

    remote = RedisBackend.from_url("redis://localhost:6379/0", prefix="myapp")
    products = Cache("products", backend=TwoLevelBackend(remote, local_ttl=30))

A read is answered from process memory when it can (no I/O: a hit costs about what a
`MemoryBackend` hit does); on a local miss it reads Redis and keeps a local copy. A write,
delete or ``bump`` changes Redis and announces it with a ``PUBLISH`` on
``{prefix}:c:invalidate`` (derived from the remote's key prefix, so caches on other
prefixes never hear it) in one script, so the change is never made without the message;
then the local tier follows. ``invalidate_tags`` increments the tag versions (one pipeline,
as `RedisBackend` does, since tags may live in other Cluster slots), then publishes. Each
backend subscribes on one daemon thread and applies the other processes' messages to its
local tier (its own are recognised by an origin id and skipped).

**How long can a local copy be wrong?** A copy is dropped when the message about a change
arrives (about half a millisecond between processes on one machine). Pub/sub is
fire-and-forget, so a message can be lost: the subscriber's connection broke (or Redis
dropped it, over its pub/sub output buffer limit, or failed over), or a tag invalidation's
``PUBLISH`` never happened (the writer died after the INCRs, or the ``PUBLISH`` failed: that
call then raises `BackendUnavailable`). The first case is detected (a refused or reset
connection at once; a hung server or a silent network drop by a missed ``PING`` reply
within about two ``heartbeat`` periods): the local tier is cleared and bypassed, every read
goes to Redis, until the subscription is confirmed again. For anything else the hard bound
is the copy's lifetime: **a local copy lives at most ``min(local_ttl, the entry's remaining
TTL in Redis)`` after it was read from or written to Redis**, so ``local_ttl`` is the
longest a lost message can leave a copy stale.

The local tier is a `LocalCopies` (no I/O): it also closes the race between a read-through
and an invalidation that lands while the Redis reply is on its way (the copy is not kept).

**Tags.** A copy made on read-through learns its entry's tags from Redis (the read script
returns the tag names the entry carries), so a tag invalidation drops exactly the local
copies carrying the tag, as in Redis, not the whole local tier.

**When Redis is unreachable** every call raises `BackendUnavailable` (the `Cache` turns it
into a miss or an unstored value), like `RedisBackend`. Until the subscriber notices the
outage, local hits are still served (they are within the bound above); from then on the
local tier is empty and bypassed.

Round trips: a local hit none; a local miss one ``EVALSHA`` (the remote's ``read.lua`` plus
``PTTL`` and the entry's tag names); a write, delete or bump one ``EVALSHA`` (the remote's
script or ``INCR``, plus ``PUBLISH``); a tag invalidation the remote's pipeline plus one
``PUBLISH``.

The subscriber (`Subscriber`, one daemon thread) starts on first use, or with `start`;
`close` / `aclose` stop it. After a ``fork`` the child has no subscriber thread: make the
backend in the child.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Sequence
from typing import Any

from sysdesign_kit.backends.redis import REDIS_ERRORS, Script, backend_error, pack
from sysdesign_kit.cache.local_copies import LocalCopies, Token
from sysdesign_kit.cache.memory import MemoryBackend
from sysdesign_kit.cache.redis import READ_SCRIPT, WRITE_SCRIPT, RedisBackend, ttl_ms
from sysdesign_kit.cache.subscriber import Subscriber
from sysdesign_kit.errors import ConfigurationError

__all__ = ["TwoLevelBackend"]

_log = logging.getLogger("sysdesign_kit.cache")

#: The remote's read script (``lua/read.lua``, unchanged) run as a function, whose live
#: entry is returned with its remaining TTL (ms) and the tag version keys it carries.
READ_THROUGH_SCRIPT = Script(
    "local function read()\n"
    f"{READ_SCRIPT.source}\n"
    "end\n"
    "local data = read()\n"
    "if not data then return false end\n"
    "local reply = {data, redis.call('PTTL', KEYS[1])}\n"
    "for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
    "  if string.sub(field, 1, 2) == 't:' then reply[#reply + 1] = string.sub(field, 3) end\n"
    "end\n"
    "return reply\n",
    name="cache read-through",
)

#: The remote's ``lua/write.lua`` and the invalidation message in one atomic call:
#: ARGV[3] the channel, ARGV[4] the message.
WRITE_AND_PUBLISH_SCRIPT = Script(
    f"local function write()\n{WRITE_SCRIPT.source}\nend\n"
    "write()\n"
    "redis.call('PUBLISH', ARGV[3], ARGV[4])\n"
    "return 1\n",
    name="cache write+publish",
)
#: The remote's ``lua/read.lua`` in delete mode and the message: ARGV[2] the channel,
#: ARGV[3] the message.
DELETE_AND_PUBLISH_SCRIPT = Script(
    f"local function delete()\n{READ_SCRIPT.source}\nend\n"
    "local found = delete()\n"
    "redis.call('PUBLISH', ARGV[2], ARGV[3])\n"
    "return found\n",
    name="cache delete+publish",
)
#: A namespace bump (INCR of its version) and the message: ARGV[1] the channel, ARGV[2]
#: the message.
BUMP_AND_PUBLISH_SCRIPT = Script(
    "local version = redis.call('INCR', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
    "return version\n",
    name="cache bump+publish",
)

_GET = (b"g",)
_DELETE = b"d"
_KEY = "k"
_BUMP = "b"
_TAGS = "t"


def _unescape(part: str) -> str:
    # Reverses the escaping of key parts (`KeySpace`), '%' last.
    return part.replace("%7D", "}").replace("%7B", "{").replace("%3A", ":").replace("%25", "%")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigurationError(f"{name} must be > 0 and finite seconds, got {value!r}")
    return float(value)


class TwoLevelBackend:
    """A `CacheBackend`: local memory in front of Redis, coherent through pub/sub.

    Args:
        remote: the shared tier; `close` closes it too.
        memory: the local tier (default: a new `MemoryBackend` with its default limits).
        local_ttl: longest a local copy is kept (seconds): the bound on staleness when an
            invalidation message is lost.
        channel: the pub/sub channel (default ``{remote prefix}:c:invalidate``); backends
            that share entries must share it.
        heartbeat: seconds between the subscriber's PINGs; a missing reply for as long
            counts as a lost subscription.

    Raises:
        ConfigurationError: a remote that is not a `RedisBackend`, a memory tier that is not
            a `MemoryBackend`, a ``local_ttl`` or ``heartbeat`` not > 0, an empty channel.
    """

    kind = "two-level"
    local = False

    def __init__(
        self,
        remote: RedisBackend,
        *,
        memory: MemoryBackend | None = None,
        local_ttl: float = 30.0,
        channel: str | None = None,
        heartbeat: float = 1.0,
    ) -> None:
        if not isinstance(remote, RedisBackend):
            raise ConfigurationError(f"remote must be a RedisBackend, got {remote!r}")
        if memory is not None and not isinstance(memory, MemoryBackend):
            raise ConfigurationError(f"memory must be a MemoryBackend, got {memory!r}")
        if channel is not None and (not isinstance(channel, str) or not channel):
            raise ConfigurationError(f"channel must be a non-empty str, got {channel!r}")
        self.remote = remote
        #: The local tier (what a local hit reads).
        self.memory = memory if memory is not None else MemoryBackend()
        self.local_ttl = _positive("local_ttl", local_ttl)
        self.heartbeat = _positive("heartbeat", heartbeat)
        self.channel = channel or f"{remote.keys.prefix}:c:invalidate"
        #: Marks this backend's own messages (skipped when they come back).
        self.origin = uuid.uuid4().hex
        #: Other backends' messages applied so far (for tests and health pages).
        self.received = 0
        self._channel = self.channel.encode()
        self._tag_head = remote.keys.head("c", "t").encode()
        self._copies = copies = LocalCopies(self.memory, self.local_ttl)
        self._memory_get = self.memory.get
        self._subscriber = Subscriber(
            remote.client,
            self._channel,
            on_message=self._apply,
            on_state=lambda subscribed: copies.reset(serving=subscribed),
            heartbeat=self.heartbeat,
        )
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"TwoLevelBackend({self.remote!r}, local_ttl={self.local_ttl}, "
            f"channel={self.channel!r}, subscribed={self._copies.serving})"
        )

    @property
    def load_lock(self) -> Any:
        """The remote's cross-process load lock, if it has one (a `Cache` uses it)."""
        return getattr(self.remote, "load_lock", None)

    @property
    def subscribed(self) -> bool:
        """Whether invalidations are being received (local copies are served and kept)."""
        return self._copies.serving

    # -- the subscriber ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the subscriber (else started by the first call); also after `close`."""
        self._closed = False
        self._started = True
        self._subscriber.start()

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the subscription is confirmed (starting it if needed); whether it is."""
        self._ensure_started()
        return self._copies.ready.wait(timeout)

    def _ensure_started(self) -> None:
        if not self._started and not self._closed:
            self.start()

    def _stop_subscriber(self) -> None:
        self._closed = True
        self._started = False
        self._subscriber.stop()
        self._copies.reset(serving=False)

    def _apply(self, raw: bytes) -> None:
        try:
            message: Any = json.loads(raw)
        except (ValueError, TypeError):
            message = None
        if not (isinstance(message, list) and len(message) >= 2):
            message = [None, None]
        origin, kind, *args = message
        if origin == self.origin:
            return
        copies = self._copies
        if kind == _KEY and len(args) == 2 and all(isinstance(a, str) for a in args):
            copies.drop(args[0], args[1])
        elif kind == _BUMP and len(args) == 1 and isinstance(args[0], str):
            copies.drop_namespace(args[0])
        elif kind == _TAGS and all(isinstance(tag, str) for tag in args):
            copies.drop_tags(args)
        else:  # not understood: forget everything rather than keep what it may change
            _log.warning("two-level cache %r: unknown message %r", self.channel, raw[:200])
            copies.drop_all()
        self.received += 1

    def _kept(self, namespace: str, key: str, token: Token, reply: Any) -> bytes | None:
        """The read-through's answer (kept as the local copy when it may be)."""
        if not reply:
            return None
        data: bytes = reply[0]
        tags = self._tag_names(reply[2:])
        if tags is not None:
            pttl = reply[1]
            remaining = pttl / 1000 if pttl > 0 else None
            self._copies.keep(namespace, key, token, data, remaining, tags)
        return data

    def _tag_names(self, keys: Sequence[bytes]) -> list[str] | None:
        """The tags named by their version keys (None if one is not this prefix's)."""
        head = self._tag_head
        tags = []
        for name in keys:
            if not (name.startswith(head) and name.endswith(b"}")):
                return None
            try:
                tag = _unescape(name[len(head) : -1].decode())
            except UnicodeDecodeError:
                return None
            if self.remote.tag_key(tag) != name:
                return None
            tags.append(tag)
        return tags

    def _message(self, kind: str, *args: str) -> bytes:
        return json.dumps([self.origin, kind, *args], separators=(",", ":")).encode()

    def _read_keys(self, namespace: str, key: str) -> tuple[bytes, bytes]:
        return self.remote.entry_key(namespace, key), self.remote.version_key(namespace)

    def _write(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str]
    ) -> tuple[list[bytes], tuple[bytes, bytes, bytes, bytes]]:
        """The keys and arguments of `WRITE_AND_PUBLISH_SCRIPT` (``ttl`` checked first)."""
        expires = ttl_ms(ttl)
        self._ensure_started()
        keys = [*self._read_keys(namespace, key), *map(self.remote.tag_key, dict.fromkeys(tags))]
        return keys, (bytes(data), expires, self._channel, self._message(_KEY, namespace, key))

    def _bump(self, namespace: str) -> tuple[tuple[bytes], tuple[bytes, bytes]]:
        """The keys and arguments of `BUMP_AND_PUBLISH_SCRIPT`."""
        return (self.remote.version_key(namespace),), (
            self._channel,
            self._message(_BUMP, namespace),
        )

    # -- blocking --------------------------------------------------------------------------

    def peek(self, namespace: str, key: str) -> bytes | None:
        """The local copy of ``key``, without I/O (None: not held, or the local tier is not
        serving). The async `Cache` asks this first, so a local hit awaits nothing."""
        if self._copies.serving:
            data: bytes | None = self._memory_get(namespace, key)
            return data
        return None

    def get(self, namespace: str, key: str) -> bytes | None:
        """The live bytes under ``key``: from memory when held there, else from Redis.

        Raises:
            BackendUnavailable: a local miss, and Redis failed, timed out or answered an
                error.
        """
        if self._copies.serving:
            data: bytes | None = self._memory_get(namespace, key)
            if data is not None:
                return data
        elif not self._started:
            self._ensure_started()
        token = self._copies.token(namespace, key)
        keys = self._read_keys(namespace, key)
        reply = READ_THROUGH_SCRIPT.run(self.remote.connections, keys, _GET)
        return self._kept(namespace, key, token, reply)

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """Store ``data`` for ``ttl`` seconds in Redis and tell the others (one script),
        then keep a copy.

        Raises:
            InvalidInput: ``ttl`` not a positive finite number.
            BackendUnavailable: Redis failed.
        """
        keys, args = self._write(namespace, key, data, ttl, tags)
        token = self._copies.token(namespace, key)
        WRITE_AND_PUBLISH_SCRIPT.run(self.remote.connections, keys, args)
        self._copies.wrote(namespace, key, token, args[0], ttl, tags)

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``key`` everywhere; whether a live entry was in Redis.

        Raises:
            BackendUnavailable: Redis failed.
        """
        self._ensure_started()
        args = (_DELETE, self._channel, self._message(_KEY, namespace, key))
        found = DELETE_AND_PUBLISH_SCRIPT.run(
            self.remote.connections, self._read_keys(namespace, key), args
        )
        self._copies.drop(namespace, key)
        return bool(found)

    def version(self, namespace: str) -> int:
        """The namespace's current version (Redis's).

        Raises:
            BackendUnavailable: Redis failed.
        """
        return self.remote.version(namespace)

    def bump(self, namespace: str) -> int:
        """Invalidate every entry of ``namespace`` everywhere; the new version.

        Raises:
            BackendUnavailable: Redis failed.
        """
        self._ensure_started()
        keys, args = self._bump(namespace)
        version = BUMP_AND_PUBLISH_SCRIPT.run(self.remote.connections, keys, args)
        self._copies.drop_namespace(namespace)
        return int(version)

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        """Invalidate every entry carrying one of ``tags`` everywhere.

        Raises:
            BackendUnavailable: Redis failed.
        """
        tags = list(dict.fromkeys(tags))
        if not tags:
            return
        self._ensure_started()
        self.remote.invalidate_tags(tags)
        self._copies.drop_tags(tags)
        self._publish(self._message(_TAGS, *tags))

    def _publish(self, message: bytes) -> None:
        try:
            self.remote.connections.call(pack(b"PUBLISH", self._channel, message))
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "PUBLISH", self.remote.settings.location) from exc

    def close(self) -> None:
        """Stop the subscriber, drop the local tier and close the remote backend.

        The backend still answers afterwards, from Redis only, until `start` is called.
        """
        self._stop_subscriber()
        self.remote.close()

    # -- asyncio ----------------------------------------------------------------------------

    async def aget(self, namespace: str, key: str) -> bytes | None:
        """`get`, awaitable (a local hit awaits nothing)."""
        if self._copies.serving:
            data: bytes | None = self._memory_get(namespace, key)
            if data is not None:
                return data
        elif not self._started:
            self._ensure_started()
        token = self._copies.token(namespace, key)
        keys = self._read_keys(namespace, key)
        reply = await self.remote.wire().run(READ_THROUGH_SCRIPT, keys, _GET)
        return self._kept(namespace, key, token, reply)

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`, awaitable."""
        keys, args = self._write(namespace, key, data, ttl, tags)
        token = self._copies.token(namespace, key)
        await self.remote.wire().run(WRITE_AND_PUBLISH_SCRIPT, keys, args)
        self._copies.wrote(namespace, key, token, args[0], ttl, tags)

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`, awaitable."""
        self._ensure_started()
        args = (_DELETE, self._channel, self._message(_KEY, namespace, key))
        found = await self.remote.wire().run(
            DELETE_AND_PUBLISH_SCRIPT, self._read_keys(namespace, key), args
        )
        self._copies.drop(namespace, key)
        return bool(found)

    async def aversion(self, namespace: str) -> int:
        """`version`, awaitable."""
        return await self.remote.aversion(namespace)

    async def abump(self, namespace: str) -> int:
        """`bump`, awaitable."""
        self._ensure_started()
        keys, args = self._bump(namespace)
        version = await self.remote.wire().run(BUMP_AND_PUBLISH_SCRIPT, keys, args)
        self._copies.drop_namespace(namespace)
        return int(version)

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        """`invalidate_tags`, awaitable."""
        tags = list(dict.fromkeys(tags))
        if not tags:
            return
        self._ensure_started()
        await self.remote.ainvalidate_tags(tags)
        self._copies.drop_tags(tags)
        await self._apublish(self._message(_TAGS, *tags))

    async def _apublish(self, message: bytes) -> None:
        try:
            await self.remote.aclient().execute_command(  # type: ignore[no-untyped-call]
                "PUBLISH", self._channel, message
            )
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "PUBLISH", self.remote.settings.location) from exc

    async def aclose(self) -> None:
        """`close`, awaitable (also closes the remote's asyncio client of this loop)."""
        await asyncio.to_thread(self._stop_subscriber)
        await self.remote.aclose()
