"""What the requests cost, read from the same events the Prometheus sink turns into metrics.

`RequestLog` is a listener: the observability middleware publishes a ``RequestFinished``
per request with its duration, status and stage timings (``ratelimit``, ``app``...).
`format_timings` turns those into the report's latency percentiles, error rate and the
timeline of one request. The durations are real (``perf_counter``), so unlike the counts
above them they change from run to run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sysdesign_kit.events import Event, RequestFinished

__all__ = ["RequestLog", "format_timings", "percentile"]

_BAR_WIDTH = 30


class RequestLog:
    """A listener keeping every ``RequestFinished`` event it is given, in order."""

    def __init__(self) -> None:
        self.finished: list[RequestFinished] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, RequestFinished):
            self.finished.append(event)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _timeline(event: RequestFinished) -> list[str]:
    longest = max((seconds for _, seconds in event.stages), default=0.0) or 1.0
    lines = [
        f"one request's timeline ({event.method} {event.route} -> {event.status}, "
        f"X-Request-ID {event.request_id}):"
    ]
    for stage, seconds in event.stages:
        bar = "#" * max(1, round(seconds / longest * _BAR_WIDTH))
        lines.append(f"  {stage:<10}{_ms(seconds):>12}  {bar}")
    lines.append(f"  {'total':<10}{_ms(event.duration):>12}")
    return lines


def format_timings(finished: Sequence[RequestFinished], *, route: str) -> list[str]:
    """Report lines: latency percentiles and error rate of ``finished``, then the stage
    timeline of the first request to ``route`` that was answered 200."""
    if not finished:
        return ["no requests were observed"]
    durations = [event.duration for event in finished]
    errors = sum(1 for event in finished if event.status >= 500)
    rejected = sum(1 for event in finished if 400 <= event.status < 500)
    lines = [
        f"latency over {len(finished)} requests (in-process, real time): "
        + ", ".join(f"p{q} {_ms(percentile(durations, q))}" for q in (50, 95, 99)),
        f"error rate: {errors / len(finished):.1%} (5xx: {errors}; 4xx incl. 429s, "
        f"the callers' errors: {rejected})",
    ]
    sample = next((e for e in finished if e.route == route and e.status == 200), None)
    if sample is not None:
        lines += ["", *_timeline(sample)]
    return lines
