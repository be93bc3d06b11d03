"""A backend that does I/O but keeps copies in memory (`peek`): its hits await nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sysdesign_kit.cache import Cache, GuardedBackend, RedisBackend
from sysdesign_kit.cache.two_level import TwoLevelBackend

pytestmark = pytest.mark.redis


class Counting(TwoLevelBackend):
    """Counts the reads that reach past `peek`."""

    reads = 0

    async def aget(self, namespace: str, key: str) -> bytes | None:
        self.reads += 1
        return await super().aget(namespace, key)


@pytest.fixture
async def backend(redis_url: str, redis_prefix: str) -> AsyncIterator[Counting]:
    made = Counting(RedisBackend.from_url(redis_url, prefix=redis_prefix))
    made.start()
    assert made.wait_subscribed(5)
    yield made
    await made.aclose()


async def test_hits_on_local_copies_skip_the_backend(backend: Counting) -> None:
    cache = Cache("peek", backend=backend, ttl=60, early_refresh_beta=0)
    assert isinstance(cache.backend, GuardedBackend)  # guarded, and peek passes through
    assert cache.backend.peek is not None
    calls = 0

    @cache.cached(key="item:{n}")
    async def item(n: int) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"n": n}

    assert await item(1) == {"n": 1}
    reads = backend.reads
    for _ in range(5):
        assert await item(1) == {"n": 1}
        assert await cache.get("item:1") == {"n": 1}
        assert await cache.get_or_load("item:1", lambda: item(2)) == {"n": 1}
    assert backend.reads == reads  # all answered by peek
    assert calls == 1
    assert await cache.get("item:2") is None  # not held: goes to the backend
    assert backend.reads == reads + 1


async def test_a_tier_not_serving_peeks_nothing(backend: Counting) -> None:
    cache = Cache("peek", backend=backend, ttl=60, early_refresh_beta=0)
    await cache.set("k", "v")
    assert backend.peek("peek", "k") is not None
    backend.close()  # stops the subscriber: the local tier is dropped and bypassed
    assert backend.peek("peek", "k") is None
