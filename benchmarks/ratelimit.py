"""Rate limiters side by side: sysdesign_kit against `limits` and pyrate-limiter (issue 2).

    python benchmarks/ratelimit.py [--quick] [--redis-url URL]
                                   [--only memory|redis|memory-per-key] [--out PATH]

Sections:

- ``memory``: in-memory decisions per second, one hot key and 1,000 keys, sync and async;
  ours against the same algorithm family in `limits` and pyrate-limiter, and the
  hand-written floor (see `_ratelimit_peers`).
- ``memory-per-key``: bytes per live key with 1,000,000 keys (RSS delta, the keys' own
  strings excluded), bytes left once ours have fully recovered, and time per hit with 1M
  live keys against 1k.
- ``redis``: one caller (sync and async) and 50 concurrent async callers against a real
  Redis (see `_ratelimit_redis`).

Prints a table (ratio = peer / ours: above 1 we are faster or smaller), then the issue's
targets, and writes the rows to ``benchmarks/results/ratelimit.json``. Medians of
interleaved repeats; the default run takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _ratelimit_redis
from benchmarks._harness import (
    Row,
    Runner,
    Target,
    async_loop,
    interleave,
    print_rows,
    print_targets,
    row,
    sync_loop,
    write_rows,
)
from benchmarks._ratelimit_memory import per_key_section
from benchmarks._ratelimit_peers import (
    FAMILIES,
    RATE_TEXT,
    floor_gcra,
    limits_aio_memory,
    limits_memory,
    pyrate_per_key,
)
from sysdesign_kit.ratelimit import RateLimiter

RESULTS = Path(__file__).resolve().parent / "results" / "ratelimit.json"
SECTIONS = ("memory", "memory-per-key", "redis")


@dataclass(frozen=True, slots=True)
class Scale:
    """How much work each section does."""

    ops: int  # operations per timed repeat (in memory)
    repeats: int
    many: int  # keys in the memory-per-key section
    many_ops: int
    many_repeats: int
    redis_ops: int
    redis_repeats: int
    redis_tasks: int
    redis_task_ops: int


FULL = Scale(3000, 15, 1_000_000, 3000, 5, 400, 7, 50, 20)
QUICK = Scale(200, 2, 5_000, 100, 2, 10, 2, 50, 2)


def _spread(count: int, ops: int, seed: int) -> list[str]:
    """``ops`` hits spread over ``count`` keys, in a shuffled order that repeats."""
    keys = [f"user:{i}" for i in range(count)]
    random.Random(seed).shuffle(keys)
    return [keys[i % count] for i in range(ops)]


BOOL = "ours try_acquire"


def memory_section(scale: Scale) -> tuple[list[Row], dict[str, float]]:
    """In-memory speed: one hot key and 1k keys, sync then async."""
    rows: list[Row] = []
    ratios: dict[str, float] = {}
    spread = _spread(1000, scale.ops, seed=1)
    shapes: tuple[tuple[str, Callable[[int], Sequence[str]]], ...] = (
        # A fresh hot key per repeat keeps `limits`' moving-window log (one entry per hit,
        # inserted at the front) at most `ops` long, the same for every repeat.
        ("1 hot key", lambda r: [f"hot{r}"] * scale.ops),
        ("1k keys", lambda r: spread),
    )
    for family in FAMILIES:
        for shape, keys in shapes:
            case = f"memory sync {family.ours} hit (decision), {shape}"
            ours = RateLimiter(RATE_TEXT, algorithm=family.ours).sync.hit
            # Like for like: `limits`' hit() answers a bool, and so does our try_acquire();
            # our hit() builds a full decision (remaining, reset, retry-after) on top.
            ours_bool = RateLimiter(RATE_TEXT, algorithm=family.ours).sync.try_acquire
            peer = limits_memory(family.limits_sync)
            pyrate_hit, pyrate = pyrate_per_key(family.pyrate_bucket)
            runners: dict[str, Runner] = {
                "ours": sync_loop(ours, keys),
                BOOL: sync_loop(ours_bool, keys),
                family.limits_name: sync_loop(peer.hit, keys),
                family.pyrate_name: sync_loop(pyrate_hit, keys),
            }
            if family.ours == "token_bucket":
                runners["floor: dict + monotonic GCRA"] = sync_loop(floor_gcra(), keys)
            medians = interleave(runners, scale.repeats, settle={family.limits_name: peer.settle})
            peer.close()
            pyrate.close()
            as_bool = {"ours": medians.pop(BOOL), family.limits_name: medians[family.limits_name]}
            rows += _rows(case, medians)
            rows += _rows(f"memory sync {family.ours} try_acquire (bool), {shape}", as_bool)
            ratios[f"sync {family.ours} {shape}"] = medians[family.limits_name] / medians["ours"]
            ratios[f"sync {family.ours} {shape} bool"] = (
                as_bool[family.limits_name] / as_bool["ours"]
            )

    loop = asyncio.new_event_loop()
    try:
        for family in FAMILIES:
            for shape, keys in shapes:
                case = f"memory async {family.ours} hit (decision), {shape}"
                ours_async = RateLimiter(RATE_TEXT, algorithm=family.ours).hit
                ours_abool = RateLimiter(RATE_TEXT, algorithm=family.ours).try_acquire
                apeer = limits_aio_memory(loop, family.limits_async)
                floor = floor_gcra()

                async def afloor(key: str, floor: Callable[[str], bool] = floor) -> bool:
                    return floor(key)

                aname = f"{family.limits_name} (aio)"
                runners = {
                    "ours": async_loop(loop, ours_async, keys),
                    BOOL: async_loop(loop, ours_abool, keys),
                    aname: async_loop(loop, apeer.hit, keys),
                }
                if family.ours == "token_bucket":
                    runners["floor: async def over the GCRA floor"] = async_loop(loop, afloor, keys)
                medians = interleave(runners, scale.repeats, settle={aname: apeer.settle})
                apeer.close()
                as_bool = {"ours": medians.pop(BOOL), aname: medians[aname]}
                rows += _rows(case, medians)
                rows += _rows(f"memory async {family.ours} try_acquire (bool), {shape}", as_bool)
                ratios[f"async {family.ours} {shape}"] = medians[aname] / medians["ours"]
                ratios[f"async {family.ours} {shape} bool"] = as_bool[aname] / as_bool["ours"]
    finally:
        loop.close()
    return rows, ratios


def _rows(case: str, medians: dict[str, float]) -> list[Row]:
    ours = medians["ours"]
    return [row(case, ours, name, value) for name, value in medians.items() if name != "ours"]


def memory_targets(ratios: dict[str, float]) -> list[Target]:
    """In memory, each algorithm >= 4x faster than the same family in `limits`.

    Judged like for like: a bool from our try_acquire against the bool from `limits`' hit,
    sync and async; the full-decision rows (our hit) are reported beside it.
    """
    targets = []
    for family in FAMILIES:
        mine = {k: v for k, v in ratios.items() if f" {family.ours} " in k}
        like = {k: v for k, v in mine.items() if k.endswith(" bool")}
        worst = min(like.values())
        detail = ", ".join(f"{k}: {v:.2f}x" for k, v in mine.items())
        targets.append(
            Target(f"in memory {family.ours} >= 4x {family.limits_name}", detail, worst >= 4)
        )
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections, print the table and targets, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--redis-url", default=None, help="default: $REDIS_URL or local 6379/0")
    parser.add_argument("--only", choices=SECTIONS, default=None, help="run one section")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    wanted = [args.only] if args.only else list(SECTIONS)

    rows: list[Row] = []
    targets: list[Target] = []
    notes: list[str] = []
    if "memory" in wanted:
        found, ratios = memory_section(scale)
        print_rows(found, "in memory (us per hit)")
        rows += found
        targets += memory_targets(ratios)
    if "memory-per-key" in wanted:
        found, more, text = per_key_section(scale.many, scale.many_ops, scale.many_repeats)
        print_rows(found, f"{scale.many:,} keys: bytes per key and time per hit")
        rows += found
        targets += more
        notes += text
    if "redis" in wanted:
        found, more, text = _ratelimit_redis.redis_section(
            redis_url,
            ops=scale.redis_ops,
            repeats=scale.redis_repeats,
            tasks=scale.redis_tasks,
            task_ops=scale.redis_task_ops,
        )
        print_rows(found, f"Redis at {_ratelimit_redis.redact(redis_url)} (us per decision)")
        rows += found
        targets += more
        notes += text

    print_targets(targets)
    if notes:
        print("\n== notes ==")
        for note in notes:
            print(f"- {note}")
    write_rows(args.out, rows)
    print(f"\nwrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
