"""Shared pieces of the side-by-side benchmarks: timing, tables, JSON and memory probes.

Every benchmark compares OUR code with a named PEER in one process run. A contender is a
`Runner`: called with the repeat number, it does its operations and returns microseconds
per operation. `interleave` runs the contenders' repeats in turn (the order rotates each
round) so machine noise lands on all of them alike, and reports medians.

Timed loops run with the cyclic garbage collector paused, as `timeit` does: otherwise a
collection triggered by one library's leftovers would be billed to whoever runs next.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "Row",
    "Runner",
    "Target",
    "async_gather",
    "async_loop",
    "interleave",
    "print_rows",
    "print_targets",
    "row",
    "rss_bytes",
    "sync_loop",
    "trim_heap",
    "write_rows",
]

#: Called with the repeat number (warm-up is -1); returns microseconds per operation.
Runner = Callable[[int], float]
#: Makes the keys one repeat works through (so each repeat can use fresh or shuffled keys).
Keys = Callable[[int], Sequence[str]]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a results table: ours against one peer in one case.

    ``ratio`` is ``peer_us / ours_us``: above 1 we are faster (or, with ``unit`` B/key,
    smaller). ``ours_us`` and ``peer_us`` carry the value in ``unit`` (microseconds per
    operation unless the unit says otherwise).
    """

    case: str
    ours_us: float
    peer: str
    peer_us: float
    ratio: float
    unit: str = "us/op"


def row(case: str, ours: float, peer: str, theirs: float, unit: str = "us/op") -> Row:
    """A `Row` with its ratio computed (and figures rounded for the table and JSON)."""
    ratio = theirs / ours if ours > 0 else float("inf")
    return Row(case, round(ours, 3), peer, round(theirs, 3), round(ratio, 2), unit)


@dataclass(frozen=True, slots=True)
class Target:
    """A goal from the issue and whether this run met it (``None``: not measured)."""

    name: str
    detail: str
    met: bool | None


def _timed(run: Callable[[], None], ops: int) -> float:
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    return elapsed * 1e6 / ops


def sync_loop(op: Callable[[str], object], keys: Keys) -> Runner:
    """A runner calling ``op(key)`` once for each key of the repeat, one after another."""

    def run(repeat: int) -> float:
        seq = keys(repeat)

        def body() -> None:
            for key in seq:
                op(key)

        return _timed(body, len(seq))

    return run


def async_loop(
    loop: asyncio.AbstractEventLoop, op: Callable[[str], Awaitable[object]], keys: Keys
) -> Runner:
    """A runner awaiting ``op(key)`` for each key in turn, timed inside the event loop."""

    async def body(seq: Sequence[str]) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            for key in seq:
                await op(key)
            return (time.perf_counter() - start) * 1e6 / len(seq)
        finally:
            if enabled:
                gc.enable()

    def run(repeat: int) -> float:
        return loop.run_until_complete(body(keys(repeat)))

    return run


def async_gather(
    loop: asyncio.AbstractEventLoop,
    op: Callable[[str], Awaitable[object]],
    keys: Callable[[int, int], Sequence[str]],
    tasks: int,
) -> Runner:
    """A runner with ``tasks`` concurrent callers (asyncio.gather), each awaiting ``op`` over
    its own keys (``keys(repeat, task)``); returns wall time per operation (1/throughput).
    """

    async def caller(seq: Sequence[str]) -> None:
        for key in seq:
            await op(key)

    async def body(seqs: list[Sequence[str]]) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            await asyncio.gather(*(caller(seq) for seq in seqs))
            return (time.perf_counter() - start) * 1e6 / sum(len(seq) for seq in seqs)
        finally:
            if enabled:
                gc.enable()

    def run(repeat: int) -> float:
        return loop.run_until_complete(body([keys(repeat, task) for task in range(tasks)]))

    return run


def interleave(
    runners: dict[str, Runner],
    repeats: int,
    *,
    settle: dict[str, Callable[[], None]] | None = None,
) -> dict[str, float]:
    """Median microseconds per operation for each runner, repeats interleaved.

    Each runner first does one untimed warm-up. ``settle[name]`` (if given) runs after each
    of that runner's repeats, outside any timing: for example to wait for a peer's
    background sweeper so that it does not run during someone else's repeat.
    """
    settle = settle or {}
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(-1, repeats):
        shift = repeat % len(names) if repeat >= 0 else 0
        for name in names[shift:] + names[:shift]:
            value = runners[name](repeat)
            if name in settle:
                settle[name]()
            if repeat >= 0:
                samples[name].append(value)
    return {name: statistics.median(values) for name, values in samples.items()}


def print_rows(rows: Sequence[Row], title: str = "") -> None:
    """Print rows as an aligned table."""
    if title:
        print(f"\n== {title} ==")
    if not rows:
        print("(no rows)")
        return
    width = max(len(r.case) for r in rows)
    peer_width = max(len(r.peer) for r in rows)
    print(
        f"{'case':<{width}}  {'ours':>10}  {'peer':<{peer_width}}  {'peer':>10}  {'peer/ours':>9}"
    )
    for r in rows:
        unit = "" if r.unit == "us/op" else f" {r.unit}"
        print(
            f"{r.case:<{width}}  {_fmt(r.ours_us):>10}  {r.peer:<{peer_width}}  "
            f"{_fmt(r.peer_us):>10}  {r.ratio:>8.2f}x{unit}"
        )


def _fmt(value: float) -> str:
    return f"{value:.1f}" if value >= 100 else f"{value:.3f}" if value < 10 else f"{value:.2f}"


def print_targets(targets: Sequence[Target], title: str = "targets (issue 2)") -> None:
    """Print each target with MET / NOT MET / NOT MEASURED under ``== title ==``."""
    print(f"\n== {title} ==")
    for target in targets:
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[target.met]
        print(f"[{verdict:^12}] {target.name}: {target.detail}")


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Write the rows as a JSON list of objects (case, ours_us, peer, peer_us, ratio, unit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n", encoding="utf-8")


def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


_LIBC: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    _name = ctypes.util.find_library("c")
    if _name:
        try:
            _LIBC = ctypes.CDLL(_name)
        except OSError:
            _LIBC = None


def trim_heap() -> None:
    """Collect garbage and hand free heap pages back to the OS, so RSS deltas count only
    what is alive (glibc ``malloc_trim``; a no-op elsewhere)."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
