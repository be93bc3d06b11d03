"""Observability layer overhead: ObservabilityMiddleware against peers (issue 3).

    python benchmarks/observability.py [--quick] [--out PATH]

Sections:

- ``request``: time per in-process request through one Starlette app (one route, a small
  JSON answer; see `_observability_apps`): bare; with a pure-ASGI no-op layer; with a
  ``BaseHTTPMiddleware`` no-op; with our ``ObservabilityMiddleware`` fully on
  (PrometheusSink on its own registry, RequestTracer on an SDK ``TracerProvider`` with no
  span processor, JSON access log to an in-memory stream, request ids, Server-Timing) and
  with metrics only; with starlette-exporter's ``PrometheusMiddleware`` and with
  prometheus-fastapi-instrumentator (both attached to the same Starlette app). Absolute
  figures, then overhead = stack - bare.
- ``events``: publishing with no sink (the ``if publisher.listeners:`` guard every
  component uses) and ``RateLimiter.sync.hit`` with no listener against one no-op listener.

Prints the tables (ratio = peer / ours: above 1 we are faster), the issue's targets, and
writes the rows to ``benchmarks/results/observability.json``. Medians of interleaved
repeats; the default run takes well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
from benchmarks._observability_apps import check, drive, stacks
from sysdesign_kit.events import Publisher, RequestFinished
from sysdesign_kit.ratelimit import RateLimiter

RESULTS = Path(__file__).resolve().parent / "results" / "observability.json"
OURS = "ours full"
PEERS = ("starlette-exporter", "prometheus-fastapi-instrumentator")
# An overhead within noise of zero (or below it) is reported as this, so ratios stay finite.
FLOOR_US = 0.001


@dataclass(frozen=True, slots=True)
class Scale:
    """How much work each section does."""

    requests: int  # requests per timed repeat
    repeats: int
    events: int  # operations per timed repeat in the events section


FULL = Scale(1500, 9, 30_000)
QUICK = Scale(50, 2, 200)


def request_section(scale: Scale) -> tuple[list[Row], dict[str, float]]:
    """Per-request time of each stack, interleaved; rows absolute then overhead."""
    built = stacks()
    loop = asyncio.new_event_loop()
    try:
        for name, stack in built.items():
            status = loop.run_until_complete(check(stack.app))
            if status != 200 or not stack.observed():
                raise RuntimeError(f"{name}: status {status}, observed {stack.observed()}")
            stack.settle()
        keys = ["-"] * scale.requests
        runners: dict[str, Runner] = {
            name: async_loop(loop, drive(stack.app), lambda _r: keys)
            for name, stack in built.items()
        }
        settle = {name: stack.settle for name, stack in built.items()}
        medians = interleave(runners, scale.repeats, settle=settle)
    finally:
        loop.close()

    bare = medians["bare Starlette"]
    over = {name: max(value - bare, FLOOR_US) for name, value in medians.items()}
    rows = [
        row("request, absolute (us per request)", medians[OURS], name, value)
        for name, value in medians.items()
        if name != OURS
    ]
    rows += [
        row("request, overhead over bare (us per request)", over[OURS], name, value)
        for name, value in over.items()
        if name not in (OURS, "bare Starlette")
    ]
    # Like for like: our layer with only the metrics sink against the metrics exporters.
    rows += [
        row("request, overhead over bare, ours metrics only", over["ours metrics only"], p, over[p])
        for p in PEERS
    ]
    return rows, over


def events_section(scale: Scale, repeats: int) -> list[Row]:
    """What an event costs when no one listens, and what one no-op listener adds."""
    publisher = Publisher()
    stages = (("app", 0.001),)

    def guarded(_key: str) -> None:
        if publisher.listeners:
            publisher.publish(RequestFinished("http", "GET", "/x", "id", 200, 0.001, stages))

    def unguarded(_key: str) -> None:
        publisher.publish(RequestFinished("http", "GET", "/x", "id", 200, 0.001, stages))

    def nothing(_key: str) -> None:
        return None

    keys = ["k"] * scale.events
    medians = interleave(
        {
            "ours": sync_loop(guarded, lambda _r: keys),
            "empty call (no event at all)": sync_loop(nothing, lambda _r: keys),
            "publish() unguarded, no listener": sync_loop(unguarded, lambda _r: keys),
        },
        repeats,
    )
    ours = medians.pop("ours")
    rows = [row("event with no sink, guarded publish", ours, n, v) for n, v in medians.items()]

    quiet = RateLimiter("1000000/hour")
    heard = RateLimiter("1000000/hour", listeners=[lambda event: None])
    hits = interleave(
        {
            "ours": sync_loop(quiet.sync.hit, lambda _r: keys),
            "with one no-op listener": sync_loop(heard.sync.hit, lambda _r: keys),
        },
        repeats,
    )
    rows.append(
        row(
            "RateLimiter.sync.hit, no listener",
            hits["ours"],
            "with one no-op listener",
            hits["with one no-op listener"],
        )
    )
    return rows


def targets(over: dict[str, float]) -> list[Target]:
    """Full layer <= 10 us overhead; faster than each peer exporter (which does less)."""
    ours = over[OURS]
    found = [Target("our full layer <= 10 us per request overhead", f"{ours:.2f} us", ours <= 10)]
    found += [
        Target(
            f"our full layer faster than {peer}",
            f"overhead {ours:.2f} us vs {over[peer]:.2f} us",
            ours < over[peer],
        )
        for peer in PEERS
    ]
    metrics = over["ours metrics only"]
    found += [
        Target(
            f"(like for like) ours metrics only faster than {peer}",
            f"overhead {metrics:.2f} us vs {over[peer]:.2f} us",
            metrics < over[peer],
        )
        for peer in PEERS
    ]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run both sections, print the tables and targets, write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL

    rows, over = request_section(scale)
    print_rows(rows, "one Starlette app, in-process requests (us per request)")
    events = events_section(scale, scale.repeats)
    print_rows(events, "events with no sink (us per operation)")
    print_targets(targets(over), "targets (issue 3)")
    print(
        "\nnotes: tracer = SDK TracerProvider without a span processor (spans recorded, not"
        " exported); access log = JsonFormatter to an io.StringIO; starlette-exporter uses"
        " the global REGISTRY (it takes no registry); overheads below"
        f" {FLOOR_US} us are shown as {FLOOR_US}."
    )
    write_rows(args.out, rows + events)
    print(f"\nwrote {len(rows) + len(events)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
