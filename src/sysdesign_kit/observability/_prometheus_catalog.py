"""What `PrometheusSink` writes: the metric catalogue and the bounded cache of label children.

Kept apart from the sink so the sink's file is only the event handling. Imports
prometheus-client at the top: only `sysdesign_kit.observability.prometheus` imports this.
"""

from __future__ import annotations

import itertools
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.registry import Collector

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import Event

__all__ = [
    "BREAKER_STATES",
    "CACHE_INDEX",
    "CACHE_OUTCOMES",
    "DECISIONS",
    "HEALTH",
    "HTTP_DURATION_BUCKETS",
    "MAX_STATES",
    "METRICS",
    "NAMESPACE",
    "OTHER",
    "OTHER_METHOD",
    "LabelCache",
    "check_buckets",
    "count",
    "ignore",
    "register_all",
    "set_value",
]

#: OpenTelemetry's advisory buckets for ``http.server.request.duration``, in seconds.
HTTP_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
#: The label value that label sets past ``max_series`` fold into.
OTHER = "other"

# What a method outside the known list (observability._semconv.known_methods) is reported as.
OTHER_METHOD = "_OTHER"
DECISIONS = ("allowed", "denied", "shadow_denied", "degraded")
BREAKER_STATES = ("closed", "open", "half_open")
MAX_STATES = 8  # known states plus a few unexpected ones per breaker
CACHE_OUTCOMES = ("hit", "miss", "stale", "coalesced")
CACHE_INDEX = {outcome: i for i, outcome in enumerate(CACHE_OUTCOMES)}
HEALTH = {"pass": 1.0, "warn": 0.5, "fail": 0.0}
NAMESPACE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_LIVESUM: dict[str, Any] = {"multiprocess_mode": "livesum"}
_RECENT: dict[str, Any] = {"multiprocess_mode": "livemostrecent"}
# short name -> (kind, name, HELP, labels, extra arguments); the request histogram is built
# apart because its buckets are the caller's.
METRICS: dict[str, tuple[type[Any], str, str, tuple[str, ...], dict[str, Any]]] = {
    "errors": (
        Counter, "http_server_errors",
        "HTTP server requests that failed, by error type (exception class or status code).",
        ("method", "route", "error_type"), {},
    ),
    "decisions": (
        Counter, "ratelimit_decisions",
        "Rate-limit decisions by policy and outcome (allowed, denied, shadow_denied, degraded).",
        ("policy", "outcome"), {},
    ),
    "state": (
        Gauge, "circuit_breaker_state",
        "Circuit breaker state: 1 on the series of the current state, 0 on the others.",
        ("name", "state"), _LIVESUM,
    ),
    "transitions": (
        Counter, "circuit_breaker_transitions", "Circuit breaker state changes.",
        ("name", "from_state", "to_state"), {},
    ),
    "rejections": (
        Counter, "circuit_breaker_rejections",
        "Calls refused by an open or saturated half-open circuit breaker.", ("name",), {},
    ),
    "breaker_calls": (
        Counter, "circuit_breaker_calls",
        "Calls a circuit breaker let through, by outcome (success, failure, ignored).",
        ("name", "outcome"), {},
    ),
    "breaker_slow_calls": (
        Counter, "circuit_breaker_slow_calls",
        "Calls a circuit breaker let through that took longer than its slow-call threshold.",
        ("name",), {},
    ),
    "attempts": (
        Counter, "retry_attempts", "Failed attempts that are retried.", ("name",), {},
    ),
    "give_ups": (
        Counter, "retry_give_ups",
        "Calls whose retrying stopped, by reason (attempts, budget, deadline...).",
        ("name", "reason"), {},
    ),
    "lookups": (
        Counter, "cache_lookups", "Cache lookups by outcome (hit, miss, stale, coalesced).",
        ("name", "outcome"), {},
    ),
    "loads": (
        Counter, "cache_loads",
        "Loader calls by outcome (loaded, missing, failed, refreshed).", ("name", "outcome"), {},
    ),
    "load_time": (
        Counter, "cache_load_duration_seconds",
        "Seconds spent in loaders (divide by cache_loads_total for the mean load time).",
        ("name",), {},
    ),
    "auth_successes": (
        Counter, "auth_successes", "Successful authentications.", ("scheme",), {},
    ),
    "auth_failures": (
        Counter, "auth_failures", "Failed authentications by reason.", ("scheme", "reason"), {},
    ),
    "backend_errors": (
        Counter, "backend_errors",
        "Shared-backend failures, by what the component did instead (outcome).",
        ("component", "backend", "outcome"), {},
    ),
    "health": (
        Gauge, "health_check_status", "Latest health check reading: 1 pass, 0.5 warn, 0 fail.",
        ("check",), _RECENT,
    ),
    "observed": (
        Gauge, "health_check_observed_value",
        "The value the latest health check observed, in the check's own unit.",
        ("check",), _RECENT,
    ),
    "health_duration": (
        Gauge, "health_check_duration", "How long the latest health check took.",
        ("check",), {"unit": "seconds", **_RECENT},
    ),
}  # fmt: skip

V = TypeVar("V")


class LabelCache(Generic[V]):
    """Values built from label sets, at most ``cap`` of them cached.

    ``hot`` is read directly by the handlers (one dict lookup per event); `miss` builds
    and caches. Past the cap, label sets are folded (the labels at ``fold`` become
    `OTHER`) and kept in a second dict whose size the remaining labels bound.
    """

    __slots__ = ("_cap", "_fold", "_folded", "_make", "hot")

    def __init__(self, make: Callable[[tuple[str, ...]], V], cap: int, fold: tuple[int, ...]):
        self._make = make
        self._cap = cap
        self._fold = fold
        self._folded: dict[tuple[str, ...], V] = {}
        self.hot: dict[Hashable, V] = {}

    def miss(self, key: Hashable, labels: tuple[str, ...]) -> V:
        if len(self.hot) < self._cap:
            value = self.hot[key] = self._make(labels)
            return value
        folded = tuple(OTHER if i in self._fold else v for i, v in enumerate(labels))
        found = self._folded.get(folded)
        if found is None:
            found = self._folded[folded] = self._make(folded)
        return found


def observer(child: Any) -> Callable[[float], None]:
    """``child.observe`` for a labelled histogram child, without its per-call checks.

    prometheus-client's ``observe`` re-checks that the child has its labels, walks the
    buckets in Python and looks at exemplars on every call; for the request histogram
    (once per request) the sum and the bucket are incremented directly instead, through the
    same value objects (so multiprocess mode works the same). A prometheus-client whose
    histograms are built differently gets its own ``observe``.
    """
    try:
        total, buckets, bounds = child._sum, child._buckets, tuple(child._upper_bounds)
        if len(buckets) != len(bounds) or bounds[-1] != math.inf:
            return child.observe  # type: ignore[no-any-return]
        add_total, adds = total.inc, [bucket.inc for bucket in buckets]
    except (AttributeError, TypeError):  # pragma: no cover - other prometheus-client layouts
        return child.observe  # type: ignore[no-any-return]

    def observe(amount: float) -> None:
        add_total(amount)
        # The first bucket whose upper bound is >= amount, as prometheus-client picks it.
        adds[bisect_left(bounds, amount)](1)

    return observe


def adder(child: Any) -> Callable[[float], None]:
    """``child.inc`` of a gauge or counter child as its value object's ``inc``, skipping the
    per-call checks (the child has its labels: it came from ``labels()``)."""
    try:
        value = child._value
        return value.inc  # type: ignore[no-any-return]
    except AttributeError:  # pragma: no cover - other prometheus-client layouts
        return child.inc  # type: ignore[no-any-return]


def count(cache: LabelCache[Any], key: Hashable, labels: tuple[str, ...]) -> None:
    child = cache.hot.get(key)
    if child is None:
        child = cache.miss(key, labels)
    child.inc()


def set_value(cache: LabelCache[Any], key: str, value: float) -> None:
    child = cache.hot.get(key)
    if child is None:
        child = cache.miss(key, (key,))
    child.set(value)


def ignore(event: Event) -> None:
    return None


def check_buckets(buckets: Sequence[float]) -> None:
    values = list(buckets)
    if not values:
        raise ConfigurationError("buckets must hold at least one upper bound")
    for value in values:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ConfigurationError(f"buckets must be finite numbers, got {value!r}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigurationError(f"buckets must be strictly increasing, got {values!r}")


def register_all(registry: CollectorRegistry, metrics: list[Collector]) -> None:
    """Register all or none, so a clash leaves the registry as it was."""
    done: list[Collector] = []
    try:
        for metric in metrics:
            registry.register(metric)
            done.append(metric)
    except ValueError as exc:
        for metric in done:
            registry.unregister(metric)
        raise ConfigurationError(
            f"{exc}; use one PrometheusSink per registry (or a different namespace)"
        ) from exc
