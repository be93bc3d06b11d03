"""RedisBackend's connections are bounded: callers beyond the limit wait, then fail typed."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sysdesign_kit.cache import Cache, RedisBackend
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError

pytestmark = pytest.mark.redis


async def test_a_burst_shares_the_allowed_connections(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, max_connections=3)
    await backend.aset("ns", "k", b"v", 60)
    replies = await asyncio.gather(*(backend.aget("ns", "k") for _ in range(200)))
    assert replies == [b"v"] * 200
    wire = backend.wire()
    assert wire.open <= 3
    assert len(wire.idle) == wire.open
    assert not wire.queue
    await backend.aclose()


async def test_a_caller_waits_for_a_busy_connection(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(
        redis_url, prefix=redis_prefix, max_connections=1, pool_timeout=2
    )
    # The only connection blocks in BLPOP for 0.3 s; a read queues behind it.
    parked = asyncio.ensure_future(backend.load_lock.apark("ns", "k", 0.3))
    await asyncio.sleep(0.05)
    assert await backend.aget("ns", "missing") is None
    assert parked.done()
    assert not await parked
    await backend.aclose()


async def test_a_caller_that_waits_too_long_is_told_why(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(
        redis_url, prefix=redis_prefix, max_connections=1, pool_timeout=0.05
    )
    parked = asyncio.ensure_future(backend.load_lock.apark("ns", "k", 0.5))
    await asyncio.sleep(0.05)
    with pytest.raises(BackendUnavailable, match="busy") as caught:
        await backend.aget("ns", "k")
    assert caught.value.__cause__ is not None
    # The cache fails open on it: the loader answers.
    cache = Cache("pool", backend=backend, ttl=60)
    assert await cache.get_or_load("k", lambda: asyncio.sleep(0, "loaded")) == "loaded"
    assert not await parked
    assert await backend.aget("ns", "k") is None  # the connection is free again
    assert backend.wire().open == 1
    await backend.aclose()


async def test_a_cancelled_waiter_gives_its_turn_on(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, max_connections=1)
    parked = asyncio.ensure_future(backend.load_lock.apark("ns", "k", 0.2))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(backend.aget("ns", "k"))
    kept = asyncio.ensure_future(backend.aget("ns", "k"))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await kept is None
    assert gone.cancelled()
    await parked
    assert backend.wire().open == 1
    await backend.aclose()


def test_threads_beyond_the_limit_wait(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, max_connections=2)
    backend.set("ns", "k", b"v", 60)
    replies: list[bytes | None] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            replies.extend(backend.get("ns", "k") for _ in range(50))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert replies == [b"v"] * 400
    assert len(backend.connections.idle) <= 2
    backend.close()


def test_bad_pool_settings(redis_url: str) -> None:
    for bad in (0, -1, True, "8"):
        with pytest.raises(ConfigurationError, match="max_connections"):
            RedisBackend(max_connections=bad)  # type: ignore[arg-type]
    for bad_wait in (0, -1, float("inf"), True):
        with pytest.raises(ConfigurationError, match="pool_timeout"):
            RedisBackend.from_url(redis_url, pool_timeout=bad_wait)
