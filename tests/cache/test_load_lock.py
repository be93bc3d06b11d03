"""The cross-process load lock: one loader per key for every process on a Redis server.

Two caches on two `RedisBackend` instances stand for two processes (each backend has its
own connections and lock tokens); the last tests run real processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sysdesign_kit.cache import Cache, RedisBackend
from sysdesign_kit.cache.guarded import GuardedBackend, GuardedLoadLock
from sysdesign_kit.cache.load_lock import LoadLock, new_token
from sysdesign_kit.cache.redis_lock import RedisLoadLock
from sysdesign_kit.cache.serializers import Envelope
from sysdesign_kit.errors import ConfigurationError
from tests.cache.conftest import Recorder

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backends(redis_url: str, redis_prefix: str) -> Iterator[list[RedisBackend]]:
    made = [RedisBackend.from_url(redis_url, prefix=redis_prefix, lock_ttl=2) for _ in range(2)]
    yield made
    for backend in made:
        backend.close()


@pytest.fixture
async def abackends(redis_url: str, redis_prefix: str) -> AsyncIterator[list[RedisBackend]]:
    made = [RedisBackend.from_url(redis_url, prefix=redis_prefix, lock_ttl=2) for _ in range(2)]
    yield made
    for backend in made:
        await backend.aclose()


def caches(backends: list[RedisBackend], recorder: Recorder, **options: Any) -> list[Cache]:
    options.setdefault("ttl", 60)
    return [
        Cache("lock", backend=b, early_refresh_beta=0.0, listeners=[recorder], **options)
        for b in backends
    ]


def test_a_redis_backend_brings_its_lock_and_a_cache_uses_it(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url, lock_ttl=3)
    assert isinstance(backend.load_lock, LoadLock)
    assert backend.load_lock.ttl == 3.0
    guarded = Cache("a", backend=backend)
    assert isinstance(guarded.backend, GuardedBackend)
    assert isinstance(guarded.load_lock, GuardedLoadLock)
    assert guarded.load_lock.inner is backend.load_lock  # behind the backend's breaker
    assert Cache("a", backend=backend, guard=False).load_lock is backend.load_lock
    assert Cache("b", backend=backend, load_lock=False).load_lock is None
    assert Cache("c").load_lock is None  # memory: single-flight is enough
    other = RedisLoadLock(backend, ttl=1)
    assert Cache("d", backend=backend, guard=False, load_lock=other).load_lock is other
    with pytest.raises(ConfigurationError, match="load_lock"):
        Cache("e", backend=backend, load_lock="yes")  # type: ignore[arg-type]
    for bad in (0, -1, float("inf"), True, "5"):
        with pytest.raises(ConfigurationError, match="ttl"):
            RedisLoadLock(backend, ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisBackend.from_url(redis_url, lock_ttl=0)
    backend.close()


def test_lock_acquire_park_release(backends: list[RedisBackend]) -> None:
    lock = backends[0].load_lock
    holder, waiter = new_token(), new_token()
    assert lock.acquire("ns", "k", holder) == (0.0, None)
    left, data = lock.acquire("ns", "k", waiter)
    assert 0 < left <= 2.0
    assert data is None
    assert not lock.park("ns", "k", 0.01)  # not released yet: times out
    assert lock.release("ns", "k", waiter) == 1  # not its lock: wakes, does not drop it
    assert lock.park("ns", "k", 1.0)  # the wake-up is waiting for it
    assert lock.acquire("ns", "k", waiter)[0] > 0  # the holder still holds it
    backends[0].set("ns", "k", b"stored by the holder", 60)
    assert lock.release("ns", "k", holder) == 1
    # Taking the lock reads the entry in the same step: the holder's value is there.
    assert lock.acquire("ns", "k", waiter) == (0.0, b"stored by the holder")
    assert lock.release("ns", "k", waiter) == 0


async def test_async_lock_wakes_a_parked_waiter(abackends: list[RedisBackend]) -> None:
    first, second = (b.load_lock for b in abackends)
    holder = new_token()
    assert await first.aacquire("ns", "k", holder) == (0.0, None)
    left, _ = await second.aacquire("ns", "k", new_token())
    began = time.monotonic()
    parked = asyncio.ensure_future(second.apark("ns", "k", left))
    await asyncio.sleep(0.05)
    assert not parked.done()
    assert await first.arelease("ns", "k", holder) == 1
    assert await parked
    assert time.monotonic() - began < 1.0  # woken, not timed out (2 s)


async def test_two_processes_worth_of_callers_load_once(
    abackends: list[RedisBackend], recorder: Recorder
) -> None:
    loads = 0

    async def load() -> dict[str, int]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        return {"id": 7}

    one, two = caches(abackends, recorder)
    results = await asyncio.gather(
        *(cache.get_or_load("product:7", load) for _ in range(100) for cache in (one, two))
    )
    assert loads == 1
    assert results == [{"id": 7}] * 200
    assert sorted(recorder.loaded) == ["loaded", "shared"]
    assert recorder.accessed.count("miss") == 2  # one flight per "process"


async def test_the_holder_rechecks_after_taking_the_lock(
    abackends: list[RedisBackend], recorder: Recorder
) -> None:
    one, two = caches(abackends, recorder)
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        return "value"

    # A process that missed, then found the lock free because the first load had finished.
    assert await one.get_or_load("k", load) == "value"
    assert two.load_lock is not None
    turn = await two._aturn(two.load_lock, two._site, "k", None, False)
    assert isinstance(turn, Envelope)
    assert turn.value == "value"
    assert loads == 1
    released = await abackends[1].load_lock.aacquire("lock", "k", new_token())
    assert released[0] == 0.0


async def test_a_dead_holder_is_replaced_when_its_lock_expires(
    redis_url: str, redis_prefix: str, recorder: Recorder
) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, lock_ttl=0.3)
    (cache,) = caches([backend], recorder)
    assert await backend.load_lock.aacquire("lock", "k", "crashed-process") == (0.0, None)
    began = time.monotonic()

    async def load() -> str:
        return "loaded after the lock expired"

    assert await cache.get_or_load("k", load) == "loaded after the lock expired"
    waited = time.monotonic() - began
    assert 0.2 <= waited < 2.0
    assert recorder.loaded == ["loaded"]
    await backend.aclose()


async def test_a_failed_load_lets_a_waiter_load_itself(
    abackends: list[RedisBackend], recorder: Recorder
) -> None:
    one, two = caches(abackends, recorder)
    started = asyncio.Event()

    async def failing() -> str:
        started.set()
        await asyncio.sleep(0.05)
        raise LookupError("database down")

    async def working() -> str:
        return "from the second process"

    first = asyncio.ensure_future(one.get_or_load("k", failing))
    await started.wait()
    second = await two.get_or_load("k", working)
    with pytest.raises(LookupError):
        await first
    assert second == "from the second process"
    assert recorder.loaded == ["failed", "loaded"]


async def test_a_refresh_is_skipped_while_another_process_loads(
    abackends: list[RedisBackend], recorder: Recorder
) -> None:
    one, _ = caches(abackends, recorder, stale_while_revalidate=60)
    await one.set("k", "old")
    other = new_token()
    assert (await abackends[1].load_lock.aacquire("lock", "k", other))[0] == 0.0
    site = one._site
    envelope = one._live(site, "k", await abackends[0].aget("lock", "k"))
    assert envelope is not None
    assert one.load_lock is not None
    turn = await one._aturn(one.load_lock, site, "k", envelope, True)
    assert turn is envelope  # serve what it has; no second load
    await abackends[1].load_lock.arelease("lock", "k", other)


def test_threads_of_two_sync_caches_load_once(
    backends: list[RedisBackend], recorder: Recorder
) -> None:
    loads = 0
    count = threading.Lock()

    def load() -> list[int]:
        nonlocal loads
        with count:
            loads += 1
        time.sleep(0.05)
        return [1, 2, 3]

    one, two = caches(backends, recorder)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda c=c: results.append(c.sync.get_or_load("k", load)))
        for c in (one, two) * 8
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == 1
    assert results == [[1, 2, 3]] * 16
    assert sorted(recorder.loaded) == ["loaded", "shared"]


def test_sync_holder_that_dies_is_replaced(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, lock_ttl=0.2)
    cache = Cache("lock", backend=backend, ttl=60)
    assert backend.load_lock.acquire("lock", "k", "crashed-process") == (0.0, None)
    began = time.monotonic()
    assert cache.sync.get_or_load("k", lambda: "mine") == "mine"
    assert 0.1 <= time.monotonic() - began < 2.0
    backend.close()


@pytest.mark.slow
def test_four_processes_of_250_callers_make_one_load(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    start_at = time.time() + 3.0  # every process imported and connected by then
    command = [sys.executable, "-m", "tests.cache.stampede_worker", redis_url, redis_prefix]
    command += ["product:42", "250", repr(start_at)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        reports.append(json.loads(out.strip().splitlines()[-1]))
    loads = int(client.get(f"{redis_prefix}:loads") or 0)
    client.close()
    assert loads == 1
    assert [r["answers"] for r in reports] == [250] * 4
    assert all(r["values"] == ['{"value": "loaded once"}'] for r in reports)
    wall = max(r["seconds"] for r in reports)
    print(f"4 x 250 callers: 1 load, last answer {wall * 1000:.1f} ms after the start")
    assert wall < 1.0  # 50 ms load; generous for a noisy 2-core machine
