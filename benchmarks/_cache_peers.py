"""The contenders of the cache benchmark, each a decorated "get product" in memory.

Every contender caches ``get_product(product_id)`` under ``product:{product_id}`` for one
hour (the seed's product cache) in process memory:

- ours: ``Cache(...).cached(key="product:{product_id}")`` (values stored as msgpack bytes,
  decoded on every hit: each caller gets its own copy); and with ``share_objects=True``
  (the stored object itself is returned, as the peers do);
- cashews: ``cache.setup("mem://")``, ``@cache(ttl=3600, key=...)``; by default it wraps
  every call in its in-process "thunder protection" (``protected=True``); also with
  ``protected=False`` and as ``@cache.early(...)`` (early refresh, protected);
- aiocache: ``@cached(ttl=3600, key_builder=...)`` on its default ``SimpleMemoryCache``
  (objects kept as they are); for the stampede also ``@cached_stampede`` (a lock per key);
- functools.lru_cache (sync only: no TTL, no async) and an awaited dict lookup: the floors.

Every contender is built fresh by a factory, so the stampede can start each repeat cold.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

PRODUCT = {"id": 42, "name": "Widget", "price": 19.99, "tags": ["tools", "home"], "stock": 7}
TTL = 3600

AsyncGet = Callable[[str], Awaitable[Any]]
SyncGet = Callable[[str], Any]
Loader = Callable[[str], Awaitable[Any]]

OURS = "ours"
OURS_SHARED = "ours, share_objects=True"
CASHEWS = "cashews (protected, default)"
CASHEWS_BARE = "cashews (protected=False)"
CASHEWS_EARLY = "cashews early (protected)"
AIOCACHE = "aiocache"
AIOCACHE_STAMPEDE = "aiocache cached_stampede"
LRU = "functools.lru_cache"
DICT_FLOOR = "floor: awaited dict lookup"
SYNC_DICT_FLOOR = "floor: dict lookup"


#: cashews caches made so far: each runs a sweeper task until closed.
_OPEN: list[Any] = []


async def close_all() -> None:
    """Close the peers' caches (their background tasks end with them)."""
    while _OPEN:
        await _OPEN.pop().close()


def quiet() -> None:
    """Peers log and warn on their own; keep the tables readable."""
    logging.getLogger("aiocache").setLevel(logging.CRITICAL)
    logging.getLogger("cashews").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="aiocache")
    warnings.filterwarnings("ignore", module="cashews")


async def product_loader(product_id: str) -> dict[str, Any]:
    """The hit benchmarks' loader: called once per contender."""
    return {**PRODUCT, "id": product_id}


def ours(load: Loader, *, shared: bool = False) -> AsyncGet:
    from sysdesign_kit.cache import Cache

    cache = Cache("bench", ttl=TTL, share_objects=shared)

    @cache.cached(key="product:{product_id}")
    async def get_product(product_id: str) -> dict[str, Any]:
        return await load(product_id)

    return get_product


def ours_sync(*, shared: bool = False) -> SyncGet:
    from sysdesign_kit.cache import Cache

    cache = Cache("bench-sync", ttl=TTL, share_objects=shared)

    @cache.cached(key="product:{product_id}")
    def get_product(product_id: str) -> dict[str, Any]:
        return {**PRODUCT, "id": product_id}

    return get_product


def cashews(load: Loader, *, protected: bool = True, early: bool = False) -> AsyncGet:
    from cashews import Cache

    cache = Cache()
    cache.setup("mem://?size=100000")
    _OPEN.append(cache)
    if early:
        decorate = cache.early(ttl=TTL, key="product:{product_id}", early_ttl=TTL * 0.9)
    else:
        decorate = cache(ttl=TTL, key="product:{product_id}", protected=protected)

    @decorate
    async def get_product(product_id: str) -> dict[str, Any]:
        return await load(product_id)

    return get_product  # type: ignore[no-any-return]


def aiocache(load: Loader, *, stampede: bool = False) -> AsyncGet:
    from aiocache import cached, cached_stampede

    def key(func: object, product_id: str) -> str:
        return f"product:{product_id}"

    decorate = (
        cached_stampede(lease=2, ttl=TTL, key_builder=key)
        if stampede
        else cached(ttl=TTL, key_builder=key)
    )

    @decorate  # type: ignore[misc]
    async def get_product(product_id: str) -> dict[str, Any]:
        return await load(product_id)

    return get_product  # type: ignore[no-any-return]


def lru() -> SyncGet:
    @functools.lru_cache(maxsize=10_000)
    def get_product(product_id: str) -> dict[str, Any]:
        return {**PRODUCT, "id": product_id}

    return get_product


def dict_floor() -> tuple[AsyncGet, SyncGet]:
    """The least a cache hit can cost: a dict lookup (awaited, and plain)."""
    store = {"42": PRODUCT}

    async def aget(product_id: str) -> Any:
        return store.get(product_id)

    def get(product_id: str) -> Any:
        return store.get(product_id)

    return aget, get


#: The async contenders of the hit section: name -> factory given a loader.
ASYNC_HIT: dict[str, Callable[[Loader], AsyncGet]] = {
    OURS: ours,
    OURS_SHARED: functools.partial(ours, shared=True),
    CASHEWS: cashews,
    CASHEWS_BARE: functools.partial(cashews, protected=False),
    CASHEWS_EARLY: functools.partial(cashews, early=True),
    AIOCACHE: aiocache,
}

#: The contenders of the stampede section.
STAMPEDE: dict[str, Callable[[Loader], AsyncGet]] = {
    OURS: ours,
    CASHEWS: cashews,
    CASHEWS_BARE: functools.partial(cashews, protected=False),
    AIOCACHE: aiocache,
    AIOCACHE_STAMPEDE: functools.partial(aiocache, stampede=True),
}


def counting_loader(delay: float) -> tuple[Loader, list[int]]:
    """A loader that sleeps ``delay`` seconds (real time) and counts its calls."""
    calls = [0]

    async def load(product_id: str) -> dict[str, Any]:
        calls[0] += 1
        await asyncio.sleep(delay)
        return {**PRODUCT, "id": product_id}

    return load, calls
