"""The cache benchmark's Redis section, all async on one real server:

- hit: our decorator over `RedisBackend` against a raw redis-py GET of the same number of
  bytes, and against cashews on its Redis backend;
- miss: a fresh key each call (read, load, store): ours (by default with the load lock
  that makes one load per key across processes: three more round trips; and with
  ``load_lock=False``) against cashews, and a raw GET plus SET of the same bytes (the least
  those two round trips cost).

cashews is set up as its docs show (``cache.setup("redis://...")``: its own pool of up to
10 connections, values pickled, errors suppressed), decorated ``@cache(ttl=3600,
key=...)``: with its default per-call "thunder protection" and with ``protected=False``.

Keys live under a fresh ``sdkbench<hex>`` prefix and are deleted at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from benchmarks._cache_peers import PRODUCT, TTL, AsyncGet
from benchmarks._harness import Runner, async_loop, interleave

__all__ = [
    "CASHEWS_REDIS",
    "CASHEWS_REDIS_BARE",
    "OURS_NO_LOCK",
    "OURS_REDIS",
    "RAW_GET",
    "RAW_GET_SET",
    "reachable",
    "redis_section",
]

OURS_REDIS = "ours, RedisBackend"
RAW_GET = "raw redis-py GET (same bytes)"
RAW_GET_SET = "raw redis-py GET + SET (same bytes)"
OURS_NO_LOCK = "ours, load_lock=False"
CASHEWS_REDIS = "cashews redis:// (protected, default)"
CASHEWS_REDIS_BARE = "cashews redis:// (protected=False)"


def reachable(url: str) -> bool:
    """Whether a Redis answers at ``url`` (a PING within a second)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_section(
    url: str, loop: asyncio.AbstractEventLoop, hit_ops: int, miss_ops: int, repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median microseconds per awaited call: hits on one warm key, then misses on fresh keys
    (a loader that answers at once), for ours, cashews and the raw floors."""
    import msgspec
    import redis.asyncio
    from cashews import Cache as Cashews

    from sysdesign_kit.cache import Cache
    from sysdesign_kit.cache.redis import RedisBackend

    prefix = f"sdkbench{uuid.uuid4().hex[:8]}"
    backend = RedisBackend.from_url(url, prefix=prefix)
    cache = Cache("bench", backend=backend, ttl=TTL)

    @cache.cached(key="product:{product_id}")
    async def get_product(product_id: str) -> dict[str, Any]:
        return {**PRODUCT, "id": product_id}

    unlocked = Cache("bench-unlocked", backend=backend, ttl=TTL, load_lock=False)

    @unlocked.cached(key="product:{product_id}")
    async def get_product_unlocked(product_id: str) -> dict[str, Any]:
        return {**PRODUCT, "id": product_id}

    raw = redis.asyncio.Redis.from_url(url)
    payload = msgspec.msgpack.encode({**PRODUCT, "id": "42"})

    async def raw_get(_key: str) -> Any:
        return await raw.get(f"{prefix}:raw")

    async def raw_get_set(key: str) -> Any:
        name = f"{prefix}:raw:{key}"
        found = await raw.get(name)
        if found is None:
            await raw.set(name, payload, ex=TTL)
        return found

    cashews = Cashews()
    cashews.setup(url)
    peers = {
        CASHEWS_REDIS: _cashews_get(cashews, f"{prefix}:cashews", protected=True),
        CASHEWS_REDIS_BARE: _cashews_get(cashews, f"{prefix}:cashews-bare", protected=False),
    }

    async def warm() -> None:
        await raw.set(f"{prefix}:raw", payload, ex=TTL)
        first = await get_product("42")
        if await get_product("42") != first or await raw_get("42") != payload:
            raise RuntimeError("the Redis contenders did not return their stored values")
        for name, peer in peers.items():
            await peer("42")
            if await peer("42") != first:
                raise RuntimeError(f"{name} did not return its stored value")

    hit_keys = ["42"] * hit_ops

    def fresh(repeat: int) -> list[str]:
        return [f"miss{repeat}-{n}" for n in range(miss_ops)]

    try:
        loop.run_until_complete(warm())
        hits: dict[str, Runner] = {
            OURS_REDIS: async_loop(loop, get_product, lambda _r: hit_keys),
            RAW_GET: async_loop(loop, raw_get, lambda _r: hit_keys),
        }
        misses: dict[str, Runner] = {
            OURS_REDIS: async_loop(loop, get_product, fresh),
            OURS_NO_LOCK: async_loop(loop, get_product_unlocked, fresh),
            RAW_GET_SET: async_loop(loop, raw_get_set, fresh),
        }
        for name, peer in peers.items():
            hits[name] = async_loop(loop, peer, lambda _r: hit_keys)
            misses[name] = async_loop(loop, peer, fresh)
        return interleave(hits, repeats), interleave(misses, repeats)
    finally:
        loop.run_until_complete(_clean(raw, prefix))
        loop.run_until_complete(cashews.close())
        loop.run_until_complete(backend.aclose())
        backend.close()


def _cashews_get(cashews: Any, namespace: str, *, protected: bool) -> AsyncGet:
    """A cashews-decorated get_product whose keys start with ``namespace``."""
    decorate = cashews(ttl=TTL, key=f"{namespace}:product:{{product_id}}", protected=protected)

    @decorate
    async def get_product(product_id: str) -> dict[str, Any]:
        return {**PRODUCT, "id": product_id}

    return get_product  # type: ignore[no-any-return]


async def _clean(raw: Any, prefix: str) -> None:
    keys = [key async for key in raw.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()
