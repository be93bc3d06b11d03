"""Memory per key and speed with many live keys: ours against `limits` MemoryStorage.

Memory is the growth of the process's resident set (RSS) while ``many`` new keys each take
one hit, read after a garbage collection and ``malloc_trim`` on both sides. The key strings
themselves are built before the first reading, so they are counted for no one; what a
library copies or derives per key (`limits` stores its own ``LIMITER/<key>/...`` string) is
its own cost and is counted (its size is given in the notes).

Ours is also measured after every key has fully recovered: on a `ManualClock` limiter the
clock is moved past the recovery horizon (two periods) and one more hit is made. RSS then
says how much memory came back; since a few unrelated objects can pin whole allocator
arenas, the target is judged on what our backend still holds: its key count and the
allocator blocks still in use (``sys.getallocatedblocks``).

Speed with ``many`` live keys is timed against the same libraries holding 1,000 keys,
repeats interleaved, with the plain-dict floor as the measure of what the CPU caches cost
alone. `limits`' expiry sweep (a thread that scans every key) is waited for after each of
its repeats so that it never runs during someone else's.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from benchmarks._harness import (
    Row,
    Runner,
    Target,
    interleave,
    row,
    rss_bytes,
    sync_loop,
    trim_heap,
)
from benchmarks._ratelimit_peers import (
    FAMILIES,
    LIMITS_ITEM,
    RATE_TEXT,
    Family,
    floor_gcra,
    limits_memory,
)
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.ratelimit import RateLimiter
from sysdesign_kit.ratelimit.backend import AlgorithmName

__all__ = ["per_key_section"]

#: Two periods of the benchmark rate (one hour) and a second: every state has recovered and
#: both generations of ours (young and old, or current and previous window) are gone.
RECOVERY_SECONDS = 2 * 3600 + 1
SCALING_TOLERANCE = 1.25
FLOOR = "floor: dict + monotonic GCRA"


def _grow(hit: Callable[[str], object], keys: list[str]) -> tuple[float, float]:
    """RSS growth per key while each key takes one hit, and microseconds per hit."""
    trim_heap()
    before = rss_bytes() or 0
    start = time.perf_counter()
    for key in keys:
        hit(key)
    elapsed = time.perf_counter() - start
    trim_heap()
    return ((rss_bytes() or 0) - before) / len(keys), elapsed * 1e6 / len(keys)


def _recovery(algorithm: AlgorithmName, keys: list[str]) -> tuple[float, float, float, int]:
    """On a ManualClock limiter: RSS per key live, RSS per key and allocator blocks per key
    left once every key has recovered, and the keys the backend still holds."""
    clock = ManualClock()
    limiter = RateLimiter(RATE_TEXT, algorithm=algorithm, clock=clock)
    hit = limiter.sync.hit
    trim_heap()
    rss, blocks = rss_bytes() or 0, sys.getallocatedblocks()
    for key in keys:
        hit(key)
    trim_heap()
    live = (rss_bytes() or 0) - rss
    clock.advance(RECOVERY_SECONDS)
    hit("after-recovery")
    trim_heap()
    left = (rss_bytes() or 0) - rss
    blocks_left = sys.getallocatedblocks() - blocks
    held = len(limiter.backend)  # type: ignore[arg-type]
    n = len(keys)
    return live / n, left / n, blocks_left / n, held


def _family(
    family: Family,
    keys: list[str],
    small: list[str],
    seqs: tuple[Callable[[int], list[str]], Callable[[int], list[str]]],
    floors: tuple[Callable[[str], bool], Callable[[str], bool]],
    repeats: int,
) -> tuple[list[Row], list[Target], str]:
    many = len(keys)
    small_seq, many_seq = seqs
    live_manual, left, blocks_left, held = _recovery(family.ours, keys)

    ours_many = RateLimiter(RATE_TEXT, algorithm=family.ours).sync.hit
    ours_bytes, ours_first = _grow(ours_many, keys)
    peer_many = limits_memory(family.limits_sync)
    peer_bytes, peer_first = _grow(peer_many.hit, keys)
    peer_many.settle()
    ours_small = RateLimiter(RATE_TEXT, algorithm=family.ours).sync.hit
    peer_small = limits_memory(family.limits_sync)
    for key in small:
        ours_small(key)
        peer_small.hit(key)
    runners: dict[str, Runner] = {
        "ours 1k": sync_loop(ours_small, small_seq),
        "ours many": sync_loop(ours_many, many_seq),
        "peer 1k": sync_loop(peer_small.hit, small_seq),
        "peer many": sync_loop(peer_many.hit, many_seq),
        "floor 1k": sync_loop(floors[0], small_seq),
        "floor many": sync_loop(floors[1], many_seq),
    }
    med = interleave(
        runners, repeats, settle={"peer 1k": peer_small.settle, "peer many": peer_many.settle}
    )
    peer_many.close()
    peer_small.close()

    label = f"{many:,} keys, {family.ours}"
    rows = [
        row(f"memory per live key, {label}", ours_bytes, family.limits_name, peer_bytes, "B/key"),
        row(
            f"first hit of each new key (one pass), {label}",
            ours_first,
            family.limits_name,
            peer_first,
        ),
        row(f"hit with {label} live", med["ours many"], family.limits_name, med["peer many"]),
        row(f"hit with {label} live", med["ours many"], FLOOR, med["floor many"]),
    ]
    slow = med["ours many"] / med["ours 1k"]
    detail = (
        f"ours {med['ours 1k']:.3f} -> {med['ours many']:.3f} us ({slow:.2f}x); "
        f"{family.limits_name} {med['peer 1k']:.3f} -> {med['peer many']:.3f} us "
        f"({med['peer many'] / med['peer 1k']:.2f}x); the plain-dict floor "
        f"{med['floor 1k']:.3f} -> {med['floor many']:.3f} us "
        f"({med['floor many'] / med['floor 1k']:.2f}x, the CPU caches alone); added per hit: "
        f"ours {med['ours many'] - med['ours 1k']:+.3f} us, floor "
        f"{med['floor many'] - med['floor 1k']:+.3f} us"
    )
    targets = [
        Target(
            f"<= 120 B per live key, {family.ours}", f"{ours_bytes:.1f} B/key", ours_bytes <= 120
        ),
        Target(
            f"0 B for recovered keys, {family.ours}",
            f"backend holds {held} key (the probe), {blocks_left:.4f} allocator blocks per key "
            f"left, RSS {left:.2f} B/key above the start",
            held <= 1 and blocks_left < 0.01,
        ),
        Target(
            f"{many:,} live keys as fast as 1k (<= {SCALING_TOLERANCE}x), {family.ours}",
            detail,
            slow <= SCALING_TOLERANCE,
        ),
    ]
    note = (
        f"{family.ours}: ManualClock limiter {live_manual:.1f} B/key live -> {left:.2f} B/key "
        f"after recovery (RSS {live_manual * many / 1e6:.1f} MB -> {left * many / 1e6:.2f} MB)"
    )
    return rows, targets, note


def per_key_section(many: int, ops: int, repeats: int) -> tuple[list[Row], list[Target], list[str]]:
    """Rows, targets and notes for ``many`` keys (1,000,000 in the full run)."""
    if rss_bytes() is None:
        return [], [Target("memory per key", "RSS unreadable on this platform", None)], []
    keys = [f"user:{i:07d}" for i in range(many)]
    order = keys[:]
    random.Random(2).shuffle(order)
    small = [f"user:{i:07d}" for i in range(1000)]
    random.Random(3).shuffle(small)
    small_seq = [small[i % 1000] for i in range(ops)]

    def many_seq(repeat: int) -> list[str]:
        start = ((repeat + 1) * ops) % max(1, many - ops)
        return order[start : start + ops]

    floor_small, floor_many = floor_gcra(), floor_gcra()
    for key in small:
        floor_small(key)
    floor_bytes, _ = _grow(floor_many, keys)
    sample = LIMITS_ITEM.key_for("user:0000000")
    notes = [
        f"memory = RSS growth / {many:,} keys after gc + malloc_trim; key strings excluded; "
        f"limits' own per-key string ({sample!r}, {sys.getsizeof(sample)} B) is its cost; "
        f"the floor holds {floor_bytes:.1f} B/key"
    ]
    rows: list[Row] = []
    targets: list[Target] = []
    for family in FAMILIES:
        found, more, note = _family(
            family,
            keys,
            small,
            (lambda r: small_seq, many_seq),
            (floor_small, floor_many),
            repeats,
        )
        trim_heap()
        rows += found
        targets += more
        notes.append(note)
    return rows, targets, notes
