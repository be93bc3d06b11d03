"""Cache-aside with stampede protection: `Cache` over a backend, and ``@cached``.

``Cache(name, ttl=..., stale_while_revalidate=..., stale_if_error=..., negative_ttl=...)``
reads and writes through a `CacheBackend` (the in-process `MemoryBackend` by default:
LRU by count and bytes, with TTL). Values are encoded with msgspec (MessagePack, or JSON).
``await cache.get_or_load(key, loader)`` and ``@cached(key="product:{product_id}")`` load a
missing key once however many callers want it, refresh hot keys early (XFetch), serve stale
values while revalidating or when the loader fails, and can cache "not found". Entries are
invalidated by key, by tag, or all at once (a namespace version). ``cache.sync`` is the
blocking twin; ``cache.as_mapping()`` plugs a cache into the breaker's ``LastGood``.
`RedisBackend` keeps entries in Redis (imported on first use: this package never needs
redis-py otherwise) and loads a key once across processes (its `LoadLock`);
`TwoLevelBackend` puts process memory in front of it, kept coherent over pub/sub. A cache
puts a backend that does I/O behind a circuit breaker (`GuardedBackend`), so an outage
costs a few timeouts before it fails open at once. `ResponseCacheMiddleware` is the HTTP
response cache (pure ASGI).
"""

from typing import TYPE_CHECKING, Any

from sysdesign_kit.cache.backend import CacheBackend
from sysdesign_kit.cache.cache import DEFAULT_MAX_VALUE_BYTES, Cache
from sysdesign_kit.cache.decorator import Decorator, cached, default_cache
from sysdesign_kit.cache.guarded import GuardedBackend
from sysdesign_kit.cache.http import ResponseCacheMiddleware
from sysdesign_kit.cache.keys import DEFAULT_MAX_KEY_LENGTH, fit_key
from sysdesign_kit.cache.load_lock import LoadLock
from sysdesign_kit.cache.mapping import CacheMapping
from sysdesign_kit.cache.memory import MemoryBackend
from sysdesign_kit.cache.policy import PRODUCT_TTL, CachePolicy
from sysdesign_kit.cache.serializers import Envelope, Serializer
from sysdesign_kit.cache.sync import SyncCache
from sysdesign_kit.cache.xfetch import should_refresh_early
from sysdesign_kit.errors import Unserializable, ValueTooLarge

if TYPE_CHECKING:
    from sysdesign_kit.cache.redis import RedisBackend
    from sysdesign_kit.cache.two_level import TwoLevelBackend

__all__ = [
    "DEFAULT_MAX_KEY_LENGTH",
    "DEFAULT_MAX_VALUE_BYTES",
    "PRODUCT_TTL",
    "Cache",
    "CacheBackend",
    "CacheMapping",
    "CachePolicy",
    "Decorator",
    "Envelope",
    "GuardedBackend",
    "LoadLock",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCacheMiddleware",
    "Serializer",
    "SyncCache",
    "TwoLevelBackend",
    "Unserializable",
    "ValueTooLarge",
    "cached",
    "default_cache",
    "fit_key",
    "should_refresh_early",
]


def __getattr__(name: str) -> Any:
    # Deferred so that importing sysdesign_kit.cache never requires redis-py.
    if name == "RedisBackend":
        from sysdesign_kit.cache.redis import RedisBackend

        return RedisBackend
    if name == "TwoLevelBackend":
        from sysdesign_kit.cache.two_level import TwoLevelBackend

        return TwoLevelBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
