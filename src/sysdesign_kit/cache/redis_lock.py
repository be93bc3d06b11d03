"""`RedisLoadLock`: the cache's cross-process load lock (see `load_lock`) over Redis.

Keys, next to the entry they guard (same hash tag, so one Cluster slot)::

    {prefix}:c:l:{key}:{{namespace}}   the lock: the holder's token, PX = ttl
    {prefix}:c:w:{key}:{{namespace}}   how many waiters are queued (expires with the lock)
    {prefix}:c:n:{key}:{{namespace}}   the wake-up list the waiters BLPOP on

``lua/lock.lua`` takes the lock or counts the caller as a waiter in one step, so a holder
cannot finish between a waiter's check and its registration unseen; ``lua/unlock.lua``
drops the lock and pushes one element per counted waiter. A waiter blocks in ``BLPOP`` for
at most the time the lock had left: woken by the holder, or by the lock's expiry when the
holder died. No waiter polls.

One lock round trip per miss per process (single-flight already joined the callers of the
process), one ``BLPOP`` per waiting process, one release round trip: three commands a load.
The twin of both scripts is `sysdesign_kit.cache.redis_twin`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from sysdesign_kit.backends.redis import REDIS_ERRORS, backend_error, pack, sync_client
from sysdesign_kit.cache.load_lock import Turn
from sysdesign_kit.cache.redis_scripts import LOCK_SCRIPT, UNLOCK_SCRIPT
from sysdesign_kit.errors import ConfigurationError

if TYPE_CHECKING:
    from sysdesign_kit.cache.redis import RedisBackend

__all__ = ["DEFAULT_LOCK_TTL", "RedisLoadLock"]

#: Seconds a load lock lives unless released: above the slowest expected load.
DEFAULT_LOCK_TTL = 5.0


def _turn(reply: list[Any]) -> Turn:
    left, data = reply
    return int(left) / 1000, data


def _ms(seconds: float) -> bytes:
    return b"%d" % max(1, math.ceil(seconds * 1000))


class RedisLoadLock:
    """A `LoadLock` on the Redis server of a `RedisBackend` (usually its ``load_lock``).

    Args:
        backend: whose server, key prefix and connections to use.
        ttl: seconds a lock lives if its holder never releases it (a crashed process); also
            the longest a waiter blocks before trying again.

    Raises:
        ConfigurationError: ``ttl`` not a positive finite number of seconds.
    """

    def __init__(self, backend: RedisBackend, *, ttl: float = DEFAULT_LOCK_TTL) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
            raise ConfigurationError(f"ttl must be > 0 and finite seconds, got {ttl!r}")
        self.backend = backend
        self.ttl = float(ttl)
        self._ttl_ms = _ms(self.ttl)
        self._blocking: redis.Redis | None = None
        self._blocking_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisLoadLock({self.backend!r}, ttl={self.ttl})"

    def keys(self, namespace: str, key: str) -> tuple[bytes, bytes, bytes]:
        """The lock's, the waiter count's and the wake-up list's key names."""
        space, tag = self.backend.keys, self.backend.hash_tag(namespace)
        return (
            space.key("c", "l", key, tag=tag).encode(),
            space.key("c", "w", key, tag=tag).encode(),
            space.key("c", "n", key, tag=tag).encode(),
        )

    # -- blocking ---------------------------------------------------------------------------

    def acquire(self, namespace: str, key: str, token: str) -> Turn:
        """``(0.0, the live entry's bytes or None)`` if ``token`` now holds the lock, else
        ``(seconds the holder has left, None)`` (one EVALSHA).

        Raises:
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        keys, args = self._lock_call(namespace, key, token)
        return _turn(LOCK_SCRIPT.run(self.backend.connections, keys, args))

    def park(self, namespace: str, key: str, wait: float) -> bool:
        """Block in BLPOP until woken or ``wait`` seconds pass; whether woken.

        Raises:
            BackendUnavailable: Redis failed or did not answer in time.
        """
        wake = self.keys(namespace, key)[2]
        try:
            return self._blocking_client().blpop([wake], timeout=self._wait(wait)) is not None
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "BLPOP", self.backend.settings.location) from exc

    def release(self, namespace: str, key: str, token: str) -> int:
        """Drop the lock if ``token`` holds it and wake every waiter; how many.

        Raises:
            BackendUnavailable: Redis failed, timed out or answered an error.
        """
        return int(
            UNLOCK_SCRIPT.run(
                self.backend.connections,
                self.keys(namespace, key),
                (token.encode(), self._ttl_ms),
            )
        )

    def _lock_call(
        self, namespace: str, key: str, token: str
    ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        lock, waiters, _ = self.keys(namespace, key)
        backend = self.backend
        keys = (backend.entry_key(namespace, key), backend.version_key(namespace), lock, waiters)
        return keys, (b"g", token.encode(), self._ttl_ms)

    def _wait(self, wait: float) -> float:
        # BLPOP's 0 means "forever": never ask for less than a millisecond.
        return max(0.001, min(float(wait), self.ttl))

    def _blocking_client(self) -> redis.Redis:
        # Its own client: a blocked BLPOP must outlast the backend's short read timeout.
        if self._blocking is None:
            with self._blocking_lock:
                if self._blocking is None:
                    settings = self.backend.settings
                    self._blocking = sync_client(
                        dataclasses.replace(
                            settings, socket_timeout=settings.socket_timeout + self.ttl
                        )
                    )
        return self._blocking

    def close(self) -> None:
        """Close the client used for blocking waits (the backend's own are left open)."""
        if self._blocking is not None:
            self._blocking.close()
            self._blocking = None

    # -- asyncio ----------------------------------------------------------------------------

    async def aacquire(self, namespace: str, key: str, token: str) -> Turn:
        """`acquire`, awaitable."""
        keys, args = self._lock_call(namespace, key, token)
        return _turn(await self.backend.wire().run(LOCK_SCRIPT, keys, args))

    async def apark(self, namespace: str, key: str, wait: float) -> bool:
        """`park`, awaitable: the BLPOP holds one connection of the loop, not the loop."""
        wake = self.keys(namespace, key)[2]
        seconds = self._wait(wait)
        command = pack(b"BLPOP", wake, b"%.3f" % seconds)
        return await self.backend.wire().block(command, seconds, "BLPOP") is not None

    async def arelease(self, namespace: str, key: str, token: str) -> int:
        """`release`, awaitable."""
        keys: Sequence[bytes] = self.keys(namespace, key)
        args = (token.encode(), self._ttl_ms)
        return int(await self.backend.wire().run(UNLOCK_SCRIPT, keys, args))
