"""One process of the cross-process stampede test: ``python -m tests.cache.stampede_worker``.

Arguments: REDIS_URL PREFIX KEY CALLERS START_AT (wall-clock seconds). At ``START_AT`` the
process fires CALLERS concurrent ``get_or_load`` calls on a cold key through a `Cache` on a
`RedisBackend`; the loader sleeps 50 ms and counts itself with an INCR in Redis, so the
test can sum loads across processes. Prints one JSON line: the distinct values returned,
how many calls returned, and the seconds from START_AT to the last answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis

from sysdesign_kit.cache import Cache, RedisBackend

LOADER_SECONDS = 0.05


async def main(url: str, prefix: str, key: str, callers: int, start_at: float) -> None:
    backend = RedisBackend.from_url(url, prefix=prefix)
    cache = Cache("stampede", backend=backend, ttl=60, early_refresh_beta=0.0)
    counter = redis.Redis.from_url(url)

    async def load() -> dict[str, str]:
        counter.incr(f"{prefix}:loads")
        await asyncio.sleep(LOADER_SECONDS)
        return {"value": "loaded once"}

    await cache.get_or_load("warm-up", lambda: asyncio.sleep(0, {"warm": "up"}))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = await asyncio.gather(*(cache.get_or_load(key, load) for _ in range(callers)))
    finished = time.time() - start_at
    print(
        json.dumps(
            {
                "values": sorted({json.dumps(r, sort_keys=True) for r in results}),
                "answers": len(results),
                "seconds": finished,
            }
        )
    )
    counter.close()
    await backend.aclose()


if __name__ == "__main__":
    url, prefix, key, callers, start_at = sys.argv[1:]
    asyncio.run(main(url, prefix, key, int(callers), float(start_at)))
