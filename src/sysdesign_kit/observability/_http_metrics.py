"""`PrometheusSink`'s request metrics: the duration histogram and the in-flight gauge.

Every HTTP request updates both. Through prometheus-client's objects that is four locked
increments (in flight, the sum, one bucket, in flight again), each behind its own checks;
`LocalRequestMetrics` keeps the same numbers in plain lists under one lock, one
acquisition when a request starts and one when it ends, and turns them into the same metric
families (names, labels, buckets, ``_created``) when the registry is scraped.

That only works while the values live in this process. In prometheus-client's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``) they live in files every worker writes, so
`ClientRequestMetrics` updates prometheus-client's own objects instead. Both answer the
same three calls: `series` (the values of one label set, made once), `start` and `end`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from sysdesign_kit.observability._prometheus_catalog import adder, observer

__all__ = ["ClientRequestMetrics", "LocalRequestMetrics", "values_in_this_process"]

DURATION_NAME = "http_server_request_duration"
DURATION_DOC = "Duration of HTTP server requests (OpenTelemetry http.server.request.duration)."
DURATION_LABELS = ("method", "route", "status_code")
ACTIVE_NAME = "http_server_active_requests"
ACTIVE_DOC = "HTTP server requests in flight."


def values_in_this_process() -> bool:
    """prometheus-client keeps metric values in this process (not multiprocess mode)."""
    from prometheus_client import values

    return values.ValueClass is values.MutexValue


def _created_series() -> bool:
    # prometheus-client's own switch for ``_created`` samples, read the way it reads it.
    flag = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False")
    return flag.lower() not in ("true", "1", "t")


class LocalRequestMetrics:
    """The request histogram and in-flight gauge as plain numbers, exposed by `collect`.

    Register it in a registry like a metric. ``series(labels)`` gives the list a label set's
    observations go to (bucket counts, then the sum); `end` adds one to it.
    """

    def __init__(self, *, namespace: str, buckets: Sequence[float], methods: Iterable[str]) -> None:
        prefix = f"{namespace}_" if namespace else ""
        self._duration = prefix + DURATION_NAME
        self._active_name = prefix + ACTIVE_NAME
        self._bounds = (*buckets, math.inf)
        self._les = [floatToGoString(bound) for bound in self._bounds]  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._created: dict[tuple[str, ...], float] = {}
        self._active = dict.fromkeys(methods, 0)
        self._with_created = _created_series()

    def series(self, labels: tuple[str, ...]) -> list[float]:
        """The values of one label set (``method, route, status_code``), made on first use."""
        with self._lock:
            found = self._series.get(labels)
            if found is None:
                found = self._series[labels] = [0.0] * (len(self._bounds) + 1)
                self._created[labels] = time.time()
            return found

    def start(self, method: str) -> None:
        """One more request of ``method`` (a known method or ``_OTHER``) in flight."""
        with self._lock:
            self._active[method] += 1

    def end(self, series: list[float], method: str, duration: float) -> None:
        """A request took ``duration`` seconds; one less of ``method`` in flight."""
        index = bisect_left(self._bounds, duration)  # the first bound >= duration
        with self._lock:
            series[index] += 1
            series[-1] += duration
            self._active[method] -= 1

    def _families(self) -> tuple[HistogramMetricFamily, GaugeMetricFamily]:
        histogram = HistogramMetricFamily(
            self._duration, DURATION_DOC, labels=DURATION_LABELS, unit="seconds"
        )
        gauge = GaugeMetricFamily(self._active_name, ACTIVE_DOC, labels=("method",))
        return histogram, gauge

    def describe(self) -> Iterator[Metric]:
        """The two families without samples (the registry learns their names)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """The two families with every label set's current values."""
        with self._lock:
            series = [(labels, list(values)) for labels, values in self._series.items()]
            created = dict(self._created)
            active = list(self._active.items())
        histogram, gauge = self._families()
        for labels, values in series:
            running = 0.0
            buckets = []
            for le, count in zip(self._les, values, strict=False):
                running += count
                buckets.append((le, running))
            histogram.add_metric(labels, buckets, values[-1])
            if self._with_created:
                names = dict(zip(DURATION_LABELS, labels, strict=True))
                histogram.samples.append(
                    Sample(histogram.name + "_created", names, created[labels])
                )
        for method, count in active:
            gauge.add_metric((method,), float(count))
        yield histogram
        yield gauge


class ClientRequestMetrics:
    """The same three calls over prometheus-client's objects (multiprocess mode)."""

    def __init__(
        self,
        *,
        namespace: str,
        buckets: Sequence[float],
        methods: Iterable[str],
    ) -> None:
        self.histogram = Histogram(
            DURATION_NAME, DURATION_DOC, DURATION_LABELS, namespace=namespace,
            unit="seconds", buckets=tuple(buckets), registry=None,
        )  # fmt: skip
        self.gauge = Gauge(
            ACTIVE_NAME, ACTIVE_DOC, ("method",), namespace=namespace, registry=None,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self._active = {method: adder(self.gauge.labels(method)) for method in methods}

    def series(self, labels: tuple[str, ...]) -> Callable[[float], None]:
        """One label set's ``observe``."""
        return observer(self.histogram.labels(*labels))

    def start(self, method: str) -> None:
        """One more request of ``method`` in flight."""
        self._active[method](1)

    def end(self, series: Callable[[float], None], method: str, duration: float) -> None:
        """A request took ``duration`` seconds; one less of ``method`` in flight."""
        series(duration)
        self._active[method](-1)
