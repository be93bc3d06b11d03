"""`CacheMapping`: a cache seen as a mutable mapping, for code that wants one.

The breaker's ``LastGood(store=...)`` keeps the last good result per call in any mutable
mapping; giving it ``cache.as_mapping(ttl=...)`` puts those results in the cache, so they
expire, count against its limits and (with a shared backend) are seen by every process::

    products = Cache("products-last-good", stale_if_error=0)
    breaker = CircuitBreaker("catalog")

    @breaker(fallback=LastGood(store=products.as_mapping(ttl=86_400)))
    def get_product(product_id: int) -> dict[str, object]: ...

Keys may be any hashable: a str is used as is, anything else by its ``repr`` (LastGood's
default keys are tuples of the call's arguments, whose reprs are stable for ints, strs and
tuples of them). A mapping over a cache cannot be listed or counted (``len`` and iteration
raise TypeError); it only reads, writes and deletes by key, through ``cache.sync``, so from
async code it suits in-process backends (a remote one would block the loop while it waits).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from sysdesign_kit.cache.policy import CachePolicy

if TYPE_CHECKING:
    from sysdesign_kit.cache.cache import Cache

__all__ = ["CacheMapping"]

_ABSENT = object()


class CacheMapping(MutableMapping[Hashable, Any]):
    """``mapping[key]`` reads a fresh value (KeyError on a miss); assignment stores one.

    Args:
        cache: the cache to read and write.
        ttl: seconds a stored value stays (default: the cache's ``ttl``).
        value_type: the type values are decoded as (default ``Any``).
    """

    def __init__(self, cache: Cache, *, ttl: float | None = None, value_type: Any = Any) -> None:
        policy: CachePolicy = cache.policy.override(ttl=ttl)
        self.cache = cache
        self._site = cache.site(policy, value_type)

    def __repr__(self) -> str:
        return f"CacheMapping({self.cache!r}, ttl={self._site.policy.ttl})"

    @staticmethod
    def _key(key: Hashable) -> str:
        return key if isinstance(key, str) and key else repr(key)

    def __getitem__(self, key: Hashable) -> Any:
        cache = self.cache
        text = cache._key(self._key(key))
        raw = cache.sync._read(text)
        if raw is not None:
            envelope = cache._open(self._site, text, raw)
            if envelope is not None and cache._time() < envelope.fresh_until:
                if cache.events.listeners:
                    cache._accessed("hit")
                return envelope.value
        if cache.events.listeners:
            cache._accessed("miss")
        raise KeyError(key)

    def __setitem__(self, key: Hashable, value: Any) -> None:
        cache = self.cache
        text = cache._key(self._key(key))
        item, size, keep = cache._entry(self._site, text, value, 0.0, stored_none=True)
        cache._write(text, item, size, keep, ())

    def __delitem__(self, key: Hashable) -> None:
        if not self.cache.sync.delete(self._key(key)):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[Hashable]:
        raise TypeError("a cache cannot be listed: read, write and delete by key")

    def __len__(self) -> int:
        raise TypeError("a cache cannot be counted: read, write and delete by key")
