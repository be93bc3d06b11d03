"""`PrometheusSink`: every component event as a Prometheus metric.

Attach the sink like any listener (``listeners=[sink]`` on a component, or
``events.subscribe(sink)``) and serve the registry with `metrics_app`. This module imports
prometheus-client at the top, so it is only imported when a user asks for the sink.

The metrics (names before the optional ``namespace`` prefix)::

    http_server_request_duration_seconds  histogram  method, route, status_code
    http_server_active_requests           gauge      method                      (livesum)
    http_server_errors_total              counter    method, route, error_type
    ratelimit_decisions_total             counter    policy, outcome
    circuit_breaker_state                 gauge      name, state                 (livesum)
    circuit_breaker_transitions_total     counter    name, from_state, to_state
    circuit_breaker_rejections_total      counter    name
    circuit_breaker_calls_total           counter    name, outcome
    circuit_breaker_slow_calls_total      counter    name
    retry_attempts_total                  counter    name
    retry_give_ups_total                  counter    name, reason
    cache_lookups_total                   counter    name, outcome
    cache_loads_total                     counter    name, outcome
    cache_load_duration_seconds_total     counter    name
    auth_successes_total                  counter    scheme
    auth_failures_total                   counter    scheme, reason
    backend_errors_total                  counter    component, backend, outcome
    health_check_status                   gauge      check                       (livemostrecent)
    health_check_observed_value           gauge      check                       (livemostrecent)
    health_check_duration_seconds         gauge      check                       (livemostrecent)

Conventions and the queries they are meant for:

- The request histogram follows OpenTelemetry's ``http.server.request.duration`` (seconds,
  buckets 0.005 .. 10); its labels are the semantic-convention attributes
  ``http.request.method`` (unknown methods become ``_OTHER``), ``http.route`` (the route
  template from the event, never a raw path) and ``http.response.status_code``. With
  ``D = http_server_request_duration_seconds``: request rate is
  ``sum by (route) (rate(D_count[5m]))``; error rate (the seed's P1 alert at 5%) is
  ``sum(rate(D_count{status_code=~"5.."}[5m])) / sum(rate(D_count[5m]))``; p99 (P2 at
  1 s, a bucket bound) is ``histogram_quantile(0.99, sum by (le) (rate(D_bucket[5m])))``.
  ``http_server_errors_total`` counts the requests whose event names an ``error_type``.
- ``ratelimit_decisions_total{outcome}`` is one of ``allowed``, ``denied``,
  ``shadow_denied`` (a shadow policy would have denied; the request went through) and
  ``degraded`` (decided by the failure policy because the backend failed).
- ``circuit_breaker_state`` is the enum-as-gauges idiom: one series per state
  (``closed``, ``open``, ``half_open``), 1 for the current state and 0 for the others;
  alert on ``circuit_breaker_state{state="open"} > 0``. A breaker appears at its first
  transition. With several workers the value is the number of live workers whose breaker
  is in that state (a numeric state code could not be summed that way).
- Cache hit ratio: ``sum(rate(cache_lookups_total{outcome="hit"}[5m])) /
  sum(rate(cache_lookups_total[5m]))`` (``outcome`` is hit, miss, stale or coalesced).
- ``health_check_status`` is 1 for pass, 0.5 for warn, 0 for fail; the observed value is
  set only for checks that report one.

Bounded cardinality: every labelled metric caches at most ``max_series`` label sets; past
that, new label sets fold their free-form labels (route, names, reasons) into ``other``, so
a flood of distinct routes cannot grow the registry without bound.

Multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before
prometheus-client is first imported in each worker; counters and histograms then add up
across workers, gauges aggregate as marked above. Call
``prometheus_client.multiprocess.mark_process_dead(pid)`` when a worker exits (gunicorn's
``child_exit`` hook) so its live gauges leave the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import (
    AuthFailed,
    AuthSucceeded,
    BackendFailure,
    BreakerCallFinished,
    BreakerRejected,
    BreakerTransitioned,
    CacheAccessed,
    CacheLoaded,
    Event,
    HealthChecked,
    RateLimitDecided,
    RequestFinished,
    RequestStarted,
    RetryAttempted,
    RetryGaveUp,
)
from sysdesign_kit.observability._http_metrics import (
    ClientRequestMetrics,
    LocalRequestMetrics,
    values_in_this_process,
)
from sysdesign_kit.observability._prometheus_catalog import (
    BREAKER_STATES,
    CACHE_INDEX,
    CACHE_OUTCOMES,
    DECISIONS,
    HEALTH,
    HTTP_DURATION_BUCKETS,
    MAX_STATES,
    METRICS,
    NAMESPACE,
    OTHER,
    OTHER_METHOD,
    LabelCache,
    check_buckets,
    count,
    ignore,
    register_all,
    set_value,
)
from sysdesign_kit.observability._semconv import known_methods

__all__ = ["HTTP_DURATION_BUCKETS", "OTHER", "PrometheusSink"]


class PrometheusSink:
    """A listener that turns component events into Prometheus metrics.

    Args:
        registry: where the metrics are registered (default: prometheus-client's global
            ``REGISTRY``). One sink per registry: a second one would register the same names.
        namespace: a prefix for every metric name (``"shop"`` gives
            ``shop_http_server_request_duration_seconds``); empty by default.
        buckets: upper bounds of the request-duration histogram, in seconds.
        max_series: label sets kept per metric before new ones fold into ``other``.

    Raises:
        ConfigurationError: a bad namespace, buckets or ``max_series``, or metrics of these
            names already in the registry.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "",
        buckets: Sequence[float] = HTTP_DURATION_BUCKETS,
        max_series: int = 2000,
    ) -> None:
        if namespace and not NAMESPACE.fullmatch(namespace):
            raise ConfigurationError(
                f"namespace must be a Prometheus name ([a-zA-Z_][a-zA-Z0-9_]*), got {namespace!r}"
            )
        check_buckets(buckets)
        if type(max_series) is not int or max_series < 1:
            raise ConfigurationError(f"max_series must be a positive int, got {max_series!r}")
        self.registry = REGISTRY if registry is None else registry
        # The same known methods as the spans (OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS too),
        # so a request's metrics and its span agree on its method label.
        methods = (*sorted(known_methods()), OTHER_METHOD)
        self._methods = frozenset(methods)
        requests: LocalRequestMetrics | ClientRequestMetrics
        if values_in_this_process():
            requests = LocalRequestMetrics(namespace=namespace, buckets=buckets, methods=methods)
            request_collectors: list[Any] = [requests]
        else:
            requests = ClientRequestMetrics(namespace=namespace, buckets=buckets, methods=methods)
            request_collectors = [requests.histogram, requests.gauge]
        self._start = requests.start
        self._end = requests.end
        built: dict[str, Any] = {}
        for key, (kind, name, doc, labels, extra) in METRICS.items():
            built[key] = kind(name, doc, labels, namespace=namespace, registry=None, **extra)
        register_all(self.registry, [*request_collectors, *built.values()])

        def one(key: str, fold: tuple[int, ...] = (0,)) -> LabelCache[Any]:
            metric = built[key]
            return LabelCache(lambda labels: metric.labels(*labels), max_series, fold)

        def group(key: str, values: tuple[str, ...]) -> LabelCache[tuple[Any, ...]]:
            metric = built[key]

            def make(labels: tuple[str, ...]) -> tuple[Any, ...]:
                return tuple(metric.labels(*labels, value) for value in values)

            return LabelCache(make, max_series, (0,))

        state = built["state"]

        def states(labels: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
            return labels[0], {s: state.labels(*labels, s) for s in BREAKER_STATES}

        self._durations: LabelCache[Any] = LabelCache(requests.series, max_series, (1,))
        self._errors = one("errors", fold=(1, 2))
        self._decisions = group("decisions", DECISIONS)
        self._states = LabelCache(states, max_series, (0,))
        self._state = state
        self._transitions = one("transitions", fold=(0, 1, 2))
        self._rejections = one("rejections")
        self._breaker_calls = one("breaker_calls", fold=(0, 1))
        self._breaker_slow = one("breaker_slow_calls")
        self._attempts = one("attempts")
        self._give_ups = one("give_ups", fold=(0, 1))
        self._lookups = group("lookups", CACHE_OUTCOMES)
        self._odd_lookups = one("lookups", fold=(0, 1))
        self._loads = one("loads", fold=(0, 1))
        self._load_time = one("load_time")
        self._auth_ok = one("auth_successes")
        self._auth_failed = one("auth_failures", fold=(0, 1))
        self._backend_errors = one("backend_errors", fold=(0, 1, 2))
        self._health = one("health")
        self._health_time = one("health_duration")
        self._observed = one("observed")
        self._handlers: dict[type, Callable[[Any], None]] = {
            RequestFinished: self._request_finished,
            RequestStarted: self._request_started,
            RateLimitDecided: self._rate_limit_decided,
            BackendFailure: self._backend_failure,
            BreakerTransitioned: self._breaker_transitioned,
            BreakerRejected: self._breaker_rejected,
            BreakerCallFinished: self._breaker_call_finished,
            RetryAttempted: self._retry_attempted,
            RetryGaveUp: self._retry_gave_up,
            CacheAccessed: self._cache_accessed,
            CacheLoaded: self._cache_loaded,
            AuthSucceeded: self._auth_succeeded,
            AuthFailed: self._auth_failed_event,
            HealthChecked: self._health_checked,
        }

    def __call__(self, event: Event) -> None:
        """Record ``event``; event types the sink does not know are ignored."""
        handler = self._handlers.get(type(event))
        if handler is None:
            handler = self._resolve(type(event))
        handler(event)

    def _resolve(self, kind: type) -> Callable[[Any], None]:
        # Subclasses of known events are handled like their base; the answer is cached
        # (one entry per class, so the dict stays small).
        handler = next(
            (self._handlers[base] for base in kind.__mro__[1:] if base in self._handlers),
            ignore,
        )
        self._handlers[kind] = handler
        return handler

    # HTTP requests -------------------------------------------------------------------

    def _request_started(self, event: RequestStarted) -> None:
        self.on_request_start(event.method)

    def _request_finished(self, event: RequestFinished) -> None:
        self.on_request_end(
            event.method, event.route, event.status, event.duration, event.error_type
        )

    def on_request_start(self, method: str) -> None:
        """`RequestStarted` as a plain call (`RequestObserver`): one more in flight."""
        self._start(method if method in self._methods else OTHER_METHOD)

    def on_request_end(
        self, method: str, route: str, status: int, duration: float, error_type: str | None
    ) -> None:
        """`RequestFinished` as a plain call (`RequestObserver`): the duration, one less in
        flight, and the error when there is one."""
        if method not in self._methods:
            method = OTHER_METHOD
        series = self._durations.hot.get((method, route, status))
        if series is None:
            series = self._durations.miss((method, route, status), (method, route, str(status)))
        self._end(series, method, duration)
        if error_type is not None:
            key = (method, route, error_type)
            counter = self._errors.hot.get(key)
            if counter is None:
                counter = self._errors.miss(key, key)
            counter.inc()

    # Components ----------------------------------------------------------------------

    def _rate_limit_decided(self, event: RateLimitDecided) -> None:
        children = self._decisions.hot.get(event.policy)
        if children is None:
            children = self._decisions.miss(event.policy, (event.policy,))
        if event.degraded:
            children[3].inc()
        elif event.allowed:
            children[0].inc()
        else:
            children[2 if event.shadow else 1].inc()

    def _backend_failure(self, event: BackendFailure) -> None:
        labels = (event.component, event.backend, event.outcome)
        count(self._backend_errors, labels, labels)

    def _breaker_transitioned(self, event: BreakerTransitioned) -> None:
        entry = self._states.hot.get(event.name)
        if entry is None:
            entry = self._states.miss(event.name, (event.name,))
        name, gauges = entry
        current = event.state
        if current not in gauges and len(gauges) < MAX_STATES:
            gauges[current] = self._state.labels(name, current)
        for state, gauge in gauges.items():
            gauge.set(1.0 if state == current else 0.0)
        labels = (event.name, event.previous, current)
        count(self._transitions, labels, labels)

    def _breaker_rejected(self, event: BreakerRejected) -> None:
        count(self._rejections, event.name, (event.name,))

    def _breaker_call_finished(self, event: BreakerCallFinished) -> None:
        labels = (event.name, event.outcome)
        count(self._breaker_calls, labels, labels)
        if event.slow:
            count(self._breaker_slow, event.name, (event.name,))

    def _retry_attempted(self, event: RetryAttempted) -> None:
        count(self._attempts, event.name, (event.name,))

    def _retry_gave_up(self, event: RetryGaveUp) -> None:
        labels = (event.name, event.reason)
        count(self._give_ups, labels, labels)

    def _cache_accessed(self, event: CacheAccessed) -> None:
        children = self._lookups.hot.get(event.name)
        if children is None:
            children = self._lookups.miss(event.name, (event.name,))
        index = CACHE_INDEX.get(event.outcome)
        if index is not None:
            children[index].inc()
        else:
            # An outcome outside the vocabulary still counts as a lookup.
            labels = (event.name, event.outcome)
            count(self._odd_lookups, labels, labels)

    def _cache_loaded(self, event: CacheLoaded) -> None:
        labels = (event.name, event.outcome)
        count(self._loads, labels, labels)
        child = self._load_time.hot.get(event.name)
        if child is None:
            child = self._load_time.miss(event.name, (event.name,))
        if event.duration > 0:  # a counter only goes up
            child.inc(event.duration)

    def _auth_succeeded(self, event: AuthSucceeded) -> None:
        count(self._auth_ok, event.scheme, (event.scheme,))

    def _auth_failed_event(self, event: AuthFailed) -> None:
        labels = (event.scheme, event.reason)
        count(self._auth_failed, labels, labels)

    def _health_checked(self, event: HealthChecked) -> None:
        check = event.check
        set_value(self._health, check, HEALTH.get(event.status, 0.0))
        set_value(self._health_time, check, event.duration)
        if event.observed_value is not None:
            set_value(self._observed, check, event.observed_value)
