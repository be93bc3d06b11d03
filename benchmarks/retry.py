"""Retry decorators side by side: sysdesign_kit against tenacity, backoff and stamina (issue 4).

    python benchmarks/retry.py [--quick] [--out PATH]

Sections (contenders and their configuration: see `_retry_peers`):

- ``success``: the first call succeeds, which is what a retry decorator costs nearly every
  time it runs. Time per call of a one-line function, sync and async: bare; the
  hand-written floor (a try/except loop); ours (defaults: 4 attempts, a 60 s deadline);
  ours without a deadline and ours with a `RetryBudget`; tenacity; backoff; stamina.
  Overhead = decorated call - bare call.
- ``retry``: every call fails once and succeeds on the retry, all waits zero: the cost of
  the failure path (exception, decision, second call), sync.

The issue's figures come from a machine where the floor's overhead was 0.07 us; targets are
checked as stated and also scaled by this machine's floor (scale = 0.07 / our floor).

Prints the tables (ratio = peer / ours: above 1 we are faster), the issue's targets, and
writes the rows to ``benchmarks/results/retry.json``. Medians of interleaved repeats; the
default run takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from benchmarks._retry_peers import (
    afloor,
    atarget,
    decorators,
    flaky,
    floor,
    our_variants,
    quiet,
    target,
)

RESULTS = Path(__file__).resolve().parent / "results" / "retry.json"
PEERS = ("tenacity", "backoff", "stamina")
#: The issue's machine: overhead of the hand-written floor, and the peers' overheads.
ISSUE_FLOOR_US = 0.07
ISSUE_PEERS_US = {"tenacity": 14.0, "stamina": 12.0, "backoff": 2.4}
TARGET_US = 0.3
# An overhead within noise of zero (or below it) is reported as this, so ratios stay finite.
MIN_US = 0.001
FLOOR = "floor (try/except loop)"


@dataclass(frozen=True, slots=True)
class Scale:
    """How much work each section does."""

    fast_ops: int  # calls per timed repeat for bare, floor and ours (sub-microsecond)
    slow_ops: int  # calls per timed repeat for the peers (microseconds)
    repeats: int


FULL = Scale(100_000, 10_000, 15)
QUICK = Scale(300, 30, 2)


def _keys(n: int) -> Callable[[int], list[str]]:
    keys = ["k"] * n
    return lambda _repeat: keys


def success_section(scale: Scale, is_async: bool) -> tuple[list[Row], dict[str, float]]:
    """Per-call time on the success path; rows absolute, then overhead over bare."""
    fast, slow = _keys(scale.fast_ops), _keys(scale.slow_ops)
    fn: Any = atarget if is_async else target
    contenders: dict[str, tuple[Any, Callable[[int], list[str]]]] = {
        "bare": (fn, fast),
        FLOOR: ((afloor if is_async else floor)(fn), fast),
    }
    for name, decorate in {**decorators(), **our_variants()}.items():
        contenders[name] = (decorate(fn), slow if name in PEERS else fast)
    loop = asyncio.new_event_loop() if is_async else None
    try:
        runners: dict[str, Runner] = {}
        for name, (op, keys) in contenders.items():
            check = loop.run_until_complete(op("k")) if loop else op("k")
            if check != "k":
                raise RuntimeError(f"{name} returned {check!r}")
            runners[name] = async_loop(loop, op, keys) if loop else sync_loop(op, keys)
        medians = interleave(runners, scale.repeats)
    finally:
        if loop is not None:
            loop.close()

    kind = "async" if is_async else "sync"
    bare = medians["bare"]
    over = {name: max(value - bare, MIN_US) for name, value in medians.items()}
    rows = [
        row(f"{kind} success path, absolute (us per call)", medians["ours"], name, value)
        for name, value in medians.items()
        if name != "ours"
    ]
    rows += [
        row(f"{kind} success path, overhead over bare (us per call)", over["ours"], name, value)
        for name, value in over.items()
        if name not in ("ours", "bare")
    ]
    return rows, over


def retry_section(scale: Scale) -> list[Row]:
    """Per-call time when every call fails once and succeeds on its retry (waits zero)."""
    runners: dict[str, Runner] = {}
    for name, decorate in decorators(zero_wait=True).items():
        sync_fn, _ = flaky()
        op = decorate(sync_fn)
        if op("k") != "k":  # the flaky target alternates: fail, then succeed
            raise RuntimeError(f"{name} did not retry")
        runners[name] = sync_loop(op, _keys(scale.slow_ops))
    medians = interleave(runners, scale.repeats)
    return [
        row("sync, one failure then success, zero waits (us per call)", medians["ours"], n, v)
        for n, v in medians.items()
        if n != "ours"
    ]


def targets(sync_over: dict[str, float], async_over: dict[str, float]) -> list[Target]:
    """Ours <= 0.3 us overhead sync and async, as stated and scaled by the floor."""
    scale = ISSUE_FLOOR_US / sync_over[FLOOR]
    found: list[Target] = []
    for kind, over in (("sync", sync_over), ("async", async_over)):
        ours = over["ours"]
        found += [
            Target(f"our {kind} retry <= {TARGET_US} us overhead (success path)",
                   f"{ours:.3f} us", ours <= TARGET_US),
            Target(f"  the same, scaled to the issue's machine (floor {ISSUE_FLOOR_US} us)",
                   f"{ours * scale:.3f} us (x{scale:.2f}; floor here {sync_over[FLOOR]:.3f} us)",
                   ours * scale <= TARGET_US),
        ]  # fmt: skip
        found += [
            Target(f"  our {kind} retry faster than {peer}",
                   f"{ours:.3f} us vs {over[peer]:.3f} us (issue's machine: {ISSUE_PEERS_US[peer]} "
                   f"us, here scaled {over[peer] * scale:.2f} us)",
                   ours < over[peer])
            for peer in PEERS
        ]  # fmt: skip
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sections, print the tables and targets, write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    quiet()

    sync_rows, sync_over = success_section(scale, is_async=False)
    print_rows(sync_rows, "sync, the first call succeeds (us per call)")
    async_rows, async_over = success_section(scale, is_async=True)
    print_rows(async_rows, "async, the first call succeeds (us per call)")
    retry_rows = retry_section(scale)
    print_rows(retry_rows, "sync, one failure then success, zero waits (us per call)")
    print_targets(targets(sync_over, async_over), "targets (issue 4)")
    print(
        "\nnotes: every contender retries ConnectionError, 4 attempts, exponential waits from"
        " 1 s capped at 30 s with jitter, 60 s total where supported, no logging or metrics"
        " hooks (see _retry_peers);"
        " 'ours' reads one monotonic clock value per sync call for its deadline and none per"
        " async call that completes without waiting; overheads below"
        f" {MIN_US} us are shown as {MIN_US}."
    )
    written = sync_rows + async_rows + retry_rows
    write_rows(args.out, written)
    print(f"\nwrote {len(written)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
