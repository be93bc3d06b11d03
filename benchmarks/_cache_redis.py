"""The cache benchmark's Redis section: a hit through our decorator over `RedisBackend`
against a raw redis-py GET of the same number of bytes, both async, on one real server.

Keys live under a fresh ``sdkbench<hex>`` prefix and are deleted at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from benchmarks._cache_peers import PRODUCT, TTL
from benchmarks._harness import Runner, async_loop, interleave

__all__ = ["OURS_REDIS", "RAW_GET", "reachable", "redis_hits"]

OURS_REDIS = "ours, RedisBackend"
RAW_GET = "raw redis-py GET (same bytes)"


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


def redis_hits(
    url: str, loop: asyncio.AbstractEventLoop, ops: int, repeats: int
) -> dict[str, float]:
    """Median microseconds per awaited hit: ours through ``@cached`` and a raw GET."""
    import msgspec
    import redis.asyncio

    from sysdesign_kit.cache import Cache
    from sysdesign_kit.cache.redis import RedisBackend

    prefix = f"sdkbench{uuid.uuid4().hex[:8]}"
    backend = RedisBackend.from_url(url, prefix=prefix)
    cache = Cache("bench", backend=backend, ttl=TTL)

    @cache.cached(key="product:{product_id}")
    async def get_product(product_id: str) -> dict[str, Any]:
        return {**PRODUCT, "id": product_id}

    raw = redis.asyncio.Redis.from_url(url)
    raw_key = f"{prefix}:raw"
    payload = msgspec.msgpack.encode({**PRODUCT, "id": "42"})

    async def raw_get(_key: str) -> Any:
        return await raw.get(raw_key)

    async def warm() -> None:
        await raw.set(raw_key, payload, ex=TTL)
        first = await get_product("42")
        if await get_product("42") != first or await raw_get("42") != payload:
            raise RuntimeError("the Redis contenders did not return their stored values")

    keys = ["42"] * ops
    try:
        loop.run_until_complete(warm())
        runners: dict[str, Runner] = {
            OURS_REDIS: async_loop(loop, get_product, lambda _r: keys),
            RAW_GET: async_loop(loop, raw_get, lambda _r: keys),
        }
        return interleave(runners, repeats)
    finally:
        loop.run_until_complete(_clean(raw, prefix))
        loop.run_until_complete(backend.aclose())
        backend.close()


async def _clean(raw: Any, prefix: str) -> None:
    keys = [key async for key in raw.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()
