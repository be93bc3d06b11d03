"""Single-flight: N concurrent callers of a cold key make exactly one loader call."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sysdesign_kit.cache import Cache
from sysdesign_kit.clock import ManualClock, VirtualClock
from tests.cache.conftest import Recorder, make_cache


async def test_1000_asyncio_callers_one_load_virtual_time(recorder: Recorder) -> None:
    clock = VirtualClock()
    cache = make_cache(clock, recorder)
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await clock.sleep(0.05)
        return {"id": 42}

    results = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(1000)))
    assert calls == 1
    assert results == [{"id": 42}] * 1000
    assert recorder.accessed.count("miss") == 1
    assert recorder.accessed.count("coalesced") == 999
    assert recorder.loaded == ["loaded"]


async def test_1000_asyncio_callers_one_load_real_time() -> None:
    cache = Cache("stampede")
    calls = 0

    @cache.cached(key="product:{product_id}")
    async def get_product(product_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"id": product_id}

    results = await asyncio.gather(*(get_product(42) for _ in range(1000)))
    assert calls == 1
    assert all(result == {"id": 42} for result in results)


async def test_every_waiter_gets_the_loaders_exception(clock: ManualClock) -> None:
    cache = make_cache(clock)
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise LookupError("no such product")

    tasks = [asyncio.ensure_future(cache.get_or_load("k", load)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, LookupError) and str(r) == "no such product" for r in results)

    async def good() -> int:
        return 7

    assert await cache.get_or_load("k", good) == 7  # a failure is not cached


async def test_a_cancelled_caller_does_not_cancel_the_load(clock: ManualClock) -> None:
    cache = make_cache(clock)
    calls = 0
    gate = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "v"

    first = asyncio.ensure_future(cache.get_or_load("k", load))
    second = asyncio.ensure_future(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await second == "v"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert calls == 1
    assert await cache.get("k") == "v"


async def test_different_keys_load_separately(clock: ManualClock) -> None:
    cache = make_cache(clock)
    seen: list[str] = []

    async def load(key: str) -> str:
        seen.append(key)
        await asyncio.sleep(0)
        return key

    keys = [f"k{i % 10}" for i in range(100)]
    results = await asyncio.gather(*(cache.get_or_load(k, lambda k=k: load(k)) for k in keys))
    assert results == keys
    assert sorted(seen) == sorted(set(keys))


def _wait_for(condition: threading.Event, check: object) -> None:
    assert condition.wait(timeout=10), check


@pytest.mark.parametrize("through", ["get_or_load", "decorator"])
def test_threads_one_load(clock: ManualClock, through: str) -> None:
    threads_n = 32
    coalesced = threading.Event()
    lock = threading.Lock()
    waiting = 0

    def listener(event: object) -> None:
        nonlocal waiting
        if getattr(event, "outcome", None) == "coalesced":
            with lock:
                waiting += 1
                if waiting == threads_n - 1:
                    coalesced.set()

    cache = make_cache(clock)
    cache.events.add(listener)
    calls = 0

    def load() -> list[int]:
        nonlocal calls
        calls += 1
        # Hold the load until every other thread is waiting on it, then take real time.
        _wait_for(coalesced, "the other threads never joined the load")
        time.sleep(0.05)
        return [1, 2, 3]

    @cache.cached(key="k")
    def decorated() -> list[int]:
        return load()

    def fetch() -> list[int]:
        if through == "decorator":
            return decorated()
        result: list[int] = cache.sync.get_or_load("k", load)
        return result

    results: list[object] = []
    barrier = threading.Barrier(threads_n)

    def worker() -> None:
        barrier.wait()
        try:
            results.append(fetch())
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert calls == 1
    assert results == [[1, 2, 3]] * threads_n


def test_threads_share_the_exception(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder).sync
    all_waiting = threading.Event()
    calls = 0

    def listener(event: object) -> None:
        if recorder.accessed.count("coalesced") == 5:
            all_waiting.set()

    cache.cache.events.add(listener)

    def load() -> int:
        nonlocal calls
        calls += 1
        _wait_for(all_waiting, "the other threads never joined the load")
        raise TimeoutError("upstream")

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            cache.get_or_load("k", load)
        except TimeoutError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert calls == 1
    assert len(errors) == 6
    assert recorder.loaded == ["failed"]
