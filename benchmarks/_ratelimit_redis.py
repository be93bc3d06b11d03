"""Rate limiting over a real Redis: ours against `limits` and the raw one-round-trip floor.

The floor is redis-py running ``EVALSHA`` of the script ``return 1`` with one key: the least
one round trip costs from Python. Sequential cases use one caller (one connection); the
concurrent cases use 50 asyncio tasks, each library with its driver's default pool. The
"pipelined" floor sends 100 such EVALSHA per round trip, for reference.

Our calls are wrapped to count degraded (fail-open) decisions: a benchmark that silently
timed fail-open answers would be worthless, so any degraded decision voids the section. The
wrapper is a Python frame the peers do not pay (well under 1% of a round trip).

All keys carry a fresh prefix and are deleted at the end; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from benchmarks._harness import (
    Row,
    Runner,
    Target,
    async_gather,
    async_loop,
    interleave,
    row,
    sync_loop,
)
from benchmarks._ratelimit_peers import FAMILIES, LIMITS_ITEM, RATE_TEXT
from sysdesign_kit.ratelimit import RateLimiter

__all__ = ["redact", "redis_section"]

PIPELINE = 100
FLOOR = "raw EVALSHA 'return 1'"
DENIED_RATE = "10/hour"


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"//([^/@]*):[^/@]*@", r"//\1:***@", url)


class _Degraded(Exception):
    pass


def _checked_sync(hit: Callable[[str], Any]) -> Callable[[str], Any]:
    def call(key: str) -> Any:
        decision = hit(key)
        if decision.degraded:
            raise _Degraded("our Redis backend answered fail-open (degraded) during the run")
        return decision

    return call


def _checked_async(hit: Callable[[str], Any]) -> Callable[[str], Any]:
    async def call(key: str) -> Any:
        decision = await hit(key)
        if decision.degraded:
            raise _Degraded("our Redis backend answered fail-open (degraded) during the run")
        return decision

    return call


def redis_section(
    url: str, *, ops: int, repeats: int, tasks: int, task_ops: int
) -> tuple[list[Row], list[Target], list[str]]:
    """Rows, targets and notes for the Redis cases (skipped, with a note, when impossible)."""
    import redis
    import redis.asyncio

    skipped = [Target("Redis targets", "Redis section skipped", None)]
    try:
        from sysdesign_kit.ratelimit.redis import RedisBackend
    except ImportError as exc:
        return [], skipped, [f"Redis skipped: our Redis backend is not importable yet ({exc})"]
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        return [], skipped, [f"Redis skipped: no server answers at {redact(url)} ({exc})"]

    prefix = f"sdkbench{uuid.uuid4().hex[:12]}"
    loop = asyncio.new_event_loop()
    try:
        return _run(loop, client, url, prefix, RedisBackend, ops, repeats, tasks, task_ops)
    except _Degraded as exc:
        return [], skipped, [f"Redis section void: {exc}"]
    finally:
        doomed = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(doomed), 1000):
            client.delete(*doomed[start : start + 1000])
        client.close()
        loop.close()


def _run(
    loop: asyncio.AbstractEventLoop,
    client: Any,
    url: str,
    prefix: str,
    backend_class: Any,
    ops: int,
    repeats: int,
    tasks: int,
    task_ops: int,
) -> tuple[list[Row], list[Target], list[str]]:
    import limits.aio.storage
    import limits.storage
    import redis.asyncio

    backend = backend_class.from_url(url, prefix=prefix)
    async_stores: list[Any] = []

    def limits_stores(tag: str) -> tuple[Any, Any]:
        # One namespace per strategy: limits' strategies store different types under the
        # same key name.
        sync_store = limits.storage.RedisStorage(url, key_prefix=f"{prefix}limits{tag}")
        async_store = limits.aio.storage.RedisStorage(
            f"async+{url}", implementation="redispy", key_prefix=f"{prefix}limits{tag}"
        )
        async_stores.append(async_store)
        return sync_store, async_store

    sha = client.script_load("return 1")
    raw_async = redis.asyncio.Redis.from_url(url)
    raw_hit = partial(client.evalsha, sha, 1)
    raw_ahit = partial(raw_async.evalsha, sha, 1)
    floor_key = f"{prefix}:floor"

    def pipelined(repeat: int) -> float:
        import time

        rounds = max(1, tasks * task_ops // PIPELINE)
        start = time.perf_counter()
        for _ in range(rounds):
            pipe = client.pipeline(transaction=False)
            for _ in range(PIPELINE):
                pipe.evalsha(sha, 1, floor_key)
            pipe.execute()
        return (time.perf_counter() - start) * 1e6 / (rounds * PIPELINE)

    def hot(repeat: int) -> list[str]:
        return ["hot"] * ops

    def per_task(repeat: int, task: int) -> list[str]:
        return [f"task{task}"] * task_ops

    def one_key(repeat: int, task: int) -> list[str]:
        return ["over"] * task_ops

    rows: list[Row] = []
    targets: list[Target] = []
    notes: list[str] = []
    try:
        for family in FAMILIES:
            limiter = RateLimiter(RATE_TEXT, algorithm=family.ours, backend=backend)
            sync_store, async_store = limits_stores(family.ours)
            peer = family.limits_sync(sync_store)
            apeer = family.limits_async(async_store)
            peer_name = f"{family.limits_name} (RedisStorage)"
            apeer_name = f"{family.limits_name} (aio RedisStorage)"
            cases: list[tuple[str, dict[str, Runner]]] = [
                (
                    f"redis sync 1 caller, {family.ours}",
                    {
                        "ours": sync_loop(_checked_sync(limiter.sync.hit), hot),
                        peer_name: sync_loop(partial(peer.hit, LIMITS_ITEM), hot),
                        f"{FLOOR} (sync)": sync_loop(lambda key: raw_hit(floor_key), hot),
                    },
                ),
                (
                    f"redis async 1 caller, {family.ours}",
                    {
                        "ours": async_loop(loop, _checked_async(limiter.hit), hot),
                        apeer_name: async_loop(loop, partial(apeer.hit, LIMITS_ITEM), hot),
                        f"{FLOOR} (async)": async_loop(loop, lambda key: raw_ahit(floor_key), hot),
                    },
                ),
                (
                    f"redis async {tasks} tasks, {family.ours}",
                    {
                        "ours": async_gather(loop, _checked_async(limiter.hit), per_task, tasks),
                        apeer_name: async_gather(
                            loop, partial(apeer.hit, LIMITS_ITEM), per_task, tasks
                        ),
                        f"{FLOOR} (async, {tasks} tasks)": async_gather(
                            loop, lambda key: raw_ahit(floor_key), per_task, tasks
                        ),
                        f"{FLOOR}, pipelined {PIPELINE} per round trip": pipelined,
                    },
                ),
            ]
            for case, runners in cases:
                medians = interleave(runners, repeats)
                ours = medians.pop("ours")
                rows += [row(case, ours, name, value) for name, value in medians.items()]
                if " 1 caller" in case:
                    floor = next(v for k, v in medians.items() if k.startswith(FLOOR))
                    targets.append(
                        Target(
                            f"{case}: within 1.15x of the raw EVALSHA floor",
                            f"ours {ours:.1f} us, floor {floor:.1f} us ({ours / floor:.2f}x)",
                            ours <= 1.15 * floor,
                        )
                    )
                else:
                    theirs = medians[apeer_name]
                    targets.append(
                        Target(
                            f"{case}: >= 3x the throughput of limits async",
                            f"ours {ours:.1f} us/op, limits {theirs:.1f} us/op "
                            f"({theirs / ours:.2f}x)",
                            theirs >= 3 * ours,
                        )
                    )

        rows += _denials(
            loop, backend, limits_stores("denied")[1], raw_ahit, floor_key, one_key, tasks, repeats
        )
        notes.append(
            f"Redis keys under the prefix {prefix!r} are deleted at the end; "
            f"{tasks} tasks x {task_ops} decisions per repeat in the concurrent cases; "
            f"{ops} sequential decisions per repeat otherwise; {repeats} repeats, medians"
        )
    finally:
        loop.run_until_complete(_close(backend, async_stores, raw_async))
    return rows, targets, notes


def _denials(
    loop: asyncio.AbstractEventLoop,
    backend: Any,
    async_store: Any,
    raw_ahit: Callable[[str], Any],
    floor_key: str,
    keys: Callable[[int, int], list[str]],
    tasks: int,
    repeats: int,
) -> list[Row]:
    """50 tasks hammering one key far over its limit: ours answers repeat denials locally."""
    import limits
    import limits.aio.strategies

    limiter = RateLimiter(DENIED_RATE, backend=backend, name="bench-denied")
    peer = limits.aio.strategies.MovingWindowRateLimiter(async_store)
    item = limits.parse(DENIED_RATE.replace("/", " per "))

    async def ours(key: str) -> Any:
        return await limiter.hit(key)  # denials are not degraded: checked below

    runners: dict[str, Runner] = {
        "ours": async_gather(loop, ours, keys, tasks),
        "limits MovingWindow (aio RedisStorage)": async_gather(
            loop, partial(peer.hit, item), keys, tasks
        ),
        f"{FLOOR} (async, {tasks} tasks)": async_gather(
            loop, lambda key: raw_ahit(floor_key), keys, tasks
        ),
    }
    medians = interleave(runners, repeats)
    last = loop.run_until_complete(limiter.hit("over"))
    if last.degraded or last.allowed:
        raise _Degraded(f"the over-limit key was not denied by Redis: {last}")
    case = f"redis async {tasks} tasks, 1 key over its limit ({DENIED_RATE}, token_bucket)"
    ours_us = medians.pop("ours")
    return [row(case, ours_us, name, value) for name, value in medians.items()]


async def _close(backend: Any, async_stores: list[Any], raw_async: Any) -> None:
    await backend.aclose()
    await raw_async.aclose()
    for store in async_stores:
        storage = getattr(getattr(store, "bridge", None), "storage", None)
        if storage is not None:
            await storage.aclose()
