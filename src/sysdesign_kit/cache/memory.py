"""`MemoryBackend`: the embedded default store, LRU by entry count and by total bytes, + TTL.

One ``OrderedDict`` in least-recently-used order. A hit is one dict lookup, one clock read,
one version comparison and a ``move_to_end``, without a lock: each of those is a single C call
(atomic under the GIL), and a hit that races an eviction just misses. Writes, deletes and
invalidations take a lock so the byte count and the tag index stay exact.

Expired entries are dropped when read, when they reach the LRU end, by a small sweep on each
write (the two least recently used entries are checked), or by `purge_expired`.

Sizes: an entry counts as the length of its stored bytes plus the length of its key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "MemoryBackend"]

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_Key = tuple[str, str]
# (stored item, expires at (monotonic), namespace version, tags or None, accounted size)
_Entry = tuple[Any, float, int, tuple[str, ...] | None, int]


class MemoryBackend:
    """An in-process LRU + TTL store for `Cache` (no I/O; never fails).

    Args:
        max_entries: most entries kept; the least recently used go first.
        max_bytes: most bytes kept (stored bytes plus key lengths), likewise.
        clock: whose ``monotonic`` times the TTLs.

    Raises:
        ConfigurationError: ``max_entries`` or ``max_bytes`` not a positive int.
    """

    kind = "memory"
    local = True

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(clock, Clock):
            raise ConfigurationError(f"clock must be a Clock, got {clock!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._monotonic = clock.monotonic
        self._data: OrderedDict[_Key, _Entry] = OrderedDict()
        self._versions: dict[str, int] = {}
        self._tagged: dict[str, set[_Key]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"MemoryBackend(max_entries={self.max_entries}, max_bytes={self.max_bytes}, "
            f"entries={len(self._data)}, bytes={self._bytes})"
        )

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        """Bytes accounted to the entries held now."""
        return self._bytes

    # -- reads ----------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> Any:
        """The live item under ``key`` (bytes, or an envelope for an object cache), or None."""
        k = (namespace, key)
        entry = self._data.get(k)
        if entry is None:
            return None
        if entry[1] > self._monotonic() and entry[2] == self._versions.get(namespace, 0):
            # Not contextlib.suppress: a context manager would cost a hit more than the rest.
            try:  # noqa: SIM105
                self._data.move_to_end(k)
            except KeyError:  # evicted by another thread just now: still a good answer
                pass
            return entry[0]
        self._drop_if_same(k, entry)
        return None

    def lookup(self, namespace: str, key: str) -> Any:
        """`get` without the TTL check: what a `Cache` reads on its hot path.

        A cache judges freshness from the entry's own envelope, whose windows all end no
        later than the TTL given here, so the hit reads one clock, not two. Expired entries
        are still reclaimed by `get`, writes and `purge_expired`.
        """
        k = (namespace, key)
        entry = self._data.get(k)
        if entry is None:
            return None
        if entry[2] == self._versions.get(namespace, 0):
            # Not contextlib.suppress: a context manager would cost a hit more than the rest.
            try:  # noqa: SIM105
                self._data.move_to_end(k)
            except KeyError:  # evicted by another thread just now: still a good answer
                pass
            return entry[0]
        self._drop_if_same(k, entry)
        return None

    def reader(self, namespace: str) -> Callable[[str], Any]:
        """`lookup` bound to ``namespace``, its lookups held in a closure (a `Cache` hit
        calls this: it saves the attribute reads of a method call)."""
        data = self._data
        get = data.get
        move_to_end = data.move_to_end
        versions = self._versions
        drop = self._drop_if_same

        def read(key: str) -> Any:
            k = (namespace, key)
            entry = get(k)
            if entry is None:
                return None
            if entry[2] == versions.get(namespace, 0):
                try:  # noqa: SIM105 - see lookup
                    move_to_end(k)
                except KeyError:
                    pass
                return entry[0]
            drop(k, entry)
            return None

        return read

    def version(self, namespace: str) -> int:
        """The namespace's current version."""
        return self._versions.get(namespace, 0)

    # -- writes ---------------------------------------------------------------------------

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """Store ``data`` for ``ttl`` seconds (evicting LRU entries to make room)."""
        self.put(namespace, key, data, len(data), ttl, tags)

    def put(
        self,
        namespace: str,
        key: str,
        item: object,
        size: int,
        ttl: float,
        tags: Sequence[str] = (),
    ) -> bool:
        """Store any ``item`` accounted as ``size`` bytes (how an object cache stores).

        Returns:
            False when the entry alone is larger than ``max_bytes`` (nothing is stored, and
            any older entry under the key is removed).
        """
        k = (namespace, key)
        size += len(key)
        now = self._monotonic()
        with self._lock:
            data = self._data
            old = data.pop(k, None)
            if old is not None:
                self._forget(k, old)
            if size > self.max_bytes:
                return False
            tag_tuple = tuple(tags) if tags else None
            data[k] = (item, now + ttl, self._versions.get(namespace, 0), tag_tuple, size)
            self._bytes += size
            if tag_tuple is not None:
                for tag in tag_tuple:
                    self._tagged.setdefault(tag, set()).add(k)
            self._sweep(now)
            while len(data) > self.max_entries or self._bytes > self.max_bytes:
                lru, entry = data.popitem(last=False)
                self._forget(lru, entry)
        return True

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``key``; whether a live entry was there."""
        k = (namespace, key)
        with self._lock:
            entry = self._data.pop(k, None)
            if entry is None:
                return False
            self._forget(k, entry)
        return entry[1] > self._monotonic() and entry[2] == self._versions.get(namespace, 0)

    def bump(self, namespace: str) -> int:
        """Make every entry of ``namespace`` unreadable (they are reclaimed lazily)."""
        with self._lock:
            version = self._versions[namespace] = self._versions.get(namespace, 0) + 1
        return version

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        """Remove every entry carrying one of ``tags``."""
        with self._lock:
            for tag in tags:
                for k in self._tagged.pop(tag, ()):
                    entry = self._data.pop(k, None)
                    if entry is not None:
                        self._forget(k, entry)

    def purge_expired(self) -> int:
        """Drop every expired or outdated entry now; how many were dropped."""
        now = self._monotonic()
        with self._lock:
            versions = self._versions
            dead = [
                (k, e)
                for k, e in self._data.items()
                if e[1] <= now or e[2] != versions.get(k[0], 0)
            ]
            for k, entry in dead:
                del self._data[k]
                self._forget(k, entry)
        return len(dead)

    def clear(self) -> None:
        """Drop everything (versions are kept, so a bump is never undone)."""
        with self._lock:
            self._data.clear()
            self._tagged.clear()
            self._bytes = 0

    # -- the async twins (no I/O: they answer at once) -------------------------------------

    async def aget(self, namespace: str, key: str) -> Any:
        """`get`."""
        return self.get(namespace, key)

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        """`set`."""
        self.set(namespace, key, data, ttl, tags)

    async def adelete(self, namespace: str, key: str) -> bool:
        """`delete`."""
        return self.delete(namespace, key)

    async def abump(self, namespace: str) -> int:
        """`bump`."""
        return self.bump(namespace)

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        """`invalidate_tags`."""
        self.invalidate_tags(tags)

    # -- bookkeeping (under the lock) ------------------------------------------------------

    def _forget(self, k: _Key, entry: _Entry) -> None:
        self._bytes -= entry[4]
        tags = entry[3]
        if tags is not None:
            for tag in tags:
                keys = self._tagged.get(tag)
                if keys is not None:
                    keys.discard(k)
                    if not keys:
                        del self._tagged[tag]

    def _sweep(self, now: float) -> None:
        data = self._data
        versions = self._versions
        for _ in range(2):
            if not data:
                return
            k = next(iter(data))
            entry = data[k]
            if entry[1] > now and entry[2] == versions.get(k[0], 0):
                return
            del data[k]
            self._forget(k, entry)

    def _drop_if_same(self, k: _Key, entry: _Entry) -> None:
        with self._lock:
            if self._data.get(k) is entry:
                del self._data[k]
                self._forget(k, entry)
