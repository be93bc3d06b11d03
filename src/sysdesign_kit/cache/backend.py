"""The storage contract every cache backend meets: bytes in, bytes out, with TTL, tags and
namespace versions.

A `Cache` owns everything about *what* is stored (serialisation, freshness windows,
negative entries, stampede protection); a backend only keeps bytes under ``(namespace,
key)`` and forgets them on time or when told. The in-memory `MemoryBackend` is the embedded
default; a Redis backend and a two-level backend (memory in front of Redis, invalidated over
pub/sub) implement the same protocol.

The contract (a shared contract test suite holds each backend to it):

- ``set(namespace, key, data, ttl, tags)`` stores ``data`` for ``ttl`` seconds (> 0),
  replacing what was there. ``tags`` are global to the backend (not per namespace).
- ``get(namespace, key)`` returns those bytes, or None once any of these happened since the
  ``set``: ``ttl`` elapsed; the entry was deleted or evicted; ``bump(namespace)`` was called;
  ``invalidate_tags`` named one of its tags. Expiry is judged by the backend's own clock
  (the memory backend's ``clock``, Redis's server time).
- ``delete`` removes one entry and says whether it was there.
- ``bump(namespace)`` makes every entry of the namespace unreadable at once, in O(1): a
  version number per namespace is stamped on every entry at ``set`` and compared at ``get``.
  Returns the new version.
- ``invalidate_tags(tags)`` makes every entry carrying one of ``tags`` unreadable.
- Each operation has an ``a``-prefixed coroutine twin. ``local`` is True when the sync
  methods do no I/O, so the async `Cache` calls them directly instead of awaiting.
- Optional: ``peek(namespace, key)``, what a backend that does I/O holds in process memory
  (a two-level backend's local copy), without I/O, or None. The async `Cache` calls it
  first, so such a hit costs no await of the backend.
- A backend that cannot answer raises `sysdesign_kit.errors.BackendUnavailable` with the
  driver's exception as ``__cause__``; the cache turns that into a miss (reads) or a value
  returned but not stored (writes), and publishes a `BackendFailure` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["CacheBackend"]


@runtime_checkable
class CacheBackend(Protocol):
    """Stores bytes under ``(namespace, key)`` with a TTL, tags and namespace versions.

    Attributes:
        kind: a short name for events and reprs (``"memory"``, ``"redis"``...).
        local: whether the sync methods answer without I/O (safe to call from async code).
    """

    kind: str
    local: bool

    def get(self, namespace: str, key: str) -> bytes | None:
        """The live bytes under ``key``, or None."""
        ...

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """Store ``data`` for ``ttl`` seconds, carrying ``tags``."""
        ...

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        ...

    def version(self, namespace: str) -> int:
        """The namespace's current version (0 until first bumped)."""
        ...

    def bump(self, namespace: str) -> int:
        """Invalidate every entry of ``namespace``; the new version."""
        ...

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        """Invalidate every entry carrying one of ``tags``."""
        ...

    async def aget(self, namespace: str, key: str) -> bytes | None:
        """`get`, awaitable."""
        ...

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`, awaitable."""
        ...

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`, awaitable."""
        ...

    async def abump(self, namespace: str) -> int:
        """`bump`, awaitable."""
        ...

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        """`invalidate_tags`, awaitable."""
        ...
