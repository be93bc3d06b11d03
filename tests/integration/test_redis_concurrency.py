"""4 processes x 50 async tasks hammer one key on the real Redis: never more than the limit.

Real time, short windows (40 per 100 ms for under a second). Each admitted request is
placed in its window from the time around the call and its ``reset_us``: the window end is
``now + reset_us`` on the server's clock, a multiple of the window, and ``now`` lies between
the instants before and after the call (shifted by the measured server clock offset).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from collections import Counter
from multiprocessing.synchronize import Barrier

import pytest
import redis

from sysdesign_kit.ratelimit import RateLimiter
from sysdesign_kit.ratelimit.redis import RedisBackend

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROCESSES, TASKS, LIMIT, WINDOW_US, DURATION = 4, 50, 40, 100_000, 0.8
RATE = f"{LIMIT}/{WINDOW_US // 1000}ms"
Admitted = tuple[int, int, int]  # wall us before the call, after it, reset_us


async def _hammer(
    url: str, prefix: str, algorithm: str, barrier: Barrier
) -> tuple[list[Admitted], int]:
    backend = RedisBackend.from_url(url, prefix=prefix, socket_timeout=5.0)
    # Fail closed: a decision the backend could not make must never be counted as admitted.
    limiter = RateLimiter(
        RATE,
        algorithm=algorithm,  # type: ignore[arg-type]
        backend=backend,
        name="c",
        fail_open=False,
    )
    await limiter.peek("warm-up")  # connect before the start
    # A full collection over everything imported (pytest included) pauses a worker for
    # 100-200 ms on a slow machine; one landing in the run makes a whole batch ambiguous.
    gc.collect()
    gc.freeze()
    admitted: list[Admitted] = []
    degraded = 0
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    end = time.monotonic() + DURATION

    async def task() -> None:
        nonlocal degraded
        while time.monotonic() < end:
            before = time.time_ns() // 1000
            decision = await limiter.hit("one-key")
            after = time.time_ns() // 1000
            degraded += decision.degraded
            if decision.allowed:
                admitted.append((before, after, decision.reset_us))
            await asyncio.sleep(0)  # a task denied locally would otherwise never yield

    await asyncio.gather(*(task() for _ in range(TASKS)))
    await backend.aclose()
    return admitted, degraded


Outcome = tuple[list[Admitted], int]


def worker(
    url: str, prefix: str, algorithm: str, barrier: Barrier, results: multiprocessing.Queue[Outcome]
) -> None:
    results.put(asyncio.run(_hammer(url, prefix, algorithm, barrier)))


def server_clock_offset(url: str) -> tuple[int, int]:
    """Server time minus local wall time, in us, and its uncertainty (half the best RTT)."""
    client = redis.Redis.from_url(url)
    best = (0, 10**9)
    try:
        for _ in range(10):
            before = time.time_ns() // 1000
            seconds, micros = client.time()
            after = time.time_ns() // 1000
            if after - before < best[1] * 2:
                middle = (before + after) // 2
                best = (seconds * 1_000_000 + micros - middle, (after - before) // 2 + 1)
    finally:
        client.close()
    return best


def run_processes(url: str, prefix: str, algorithm: str) -> list[Admitted]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results: multiprocessing.Queue[Outcome] = context.Queue()
    processes = [
        context.Process(target=worker, args=(url, prefix, algorithm, barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
    assert all(process.exitcode == 0 for process in processes)
    assert sum(degraded for _, degraded in outcomes) == 0, "every decision came from Redis"
    return [item for admitted, _ in outcomes for item in admitted]


@pytest.mark.parametrize(
    ("algorithm", "windows_ahead"), [("fixed_window", 1), ("sliding_window", 2)]
)
def test_windows_never_admit_more_than_the_limit(
    redis_url: str, redis_prefix: str, algorithm: str, windows_ahead: int
) -> None:
    offset, uncertainty = server_clock_offset(redis_url)
    admitted = run_processes(redis_url, redis_prefix, algorithm)
    per_window: Counter[int] = Counter()
    ambiguous = 0
    for before, after, reset in admitted:
        # Allowed answers end their window (fixed) or the next one (sliding) at now + reset.
        low = before + offset - uncertainty + reset
        high = after + offset + uncertainty + reset
        first, last = -(-low // WINDOW_US), high // WINDOW_US
        if first == last:
            per_window[first - windows_ahead] += 1
        else:
            ambiguous += 1
    assert per_window, "nothing was admitted"
    assert max(per_window.values()) <= LIMIT, per_window
    assert len(per_window) >= 4  # many windows, not one
    assert ambiguous <= len(admitted) // 10
    # Without placing anything: no more than LIMIT per window the run touched.
    start = min(before for before, _, _ in admitted) + offset - uncertainty
    stop = max(after for _, after, _ in admitted) + offset + uncertainty
    assert len(admitted) <= LIMIT * (stop // WINDOW_US - start // WINDOW_US + 1)


def test_token_bucket_never_admits_more_than_burst_plus_refill(
    redis_url: str, redis_prefix: str
) -> None:
    _, uncertainty = server_clock_offset(redis_url)
    admitted = sorted(run_processes(redis_url, redis_prefix, "token_bucket"))
    interval = WINDOW_US // LIMIT
    assert len(admitted) > LIMIT
    # Admissions i..j (by start) all happened between i's start and the latest end among
    # them: at most burst + that stretch / interval.
    for i, (first_before, _, _) in enumerate(admitted):
        latest = first_before
        for j in range(i, len(admitted)):
            latest = max(latest, admitted[j][1])
            stretch = latest - first_before + 2 * uncertainty
            assert j - i + 1 <= LIMIT + stretch // interval, (i, j, stretch)
