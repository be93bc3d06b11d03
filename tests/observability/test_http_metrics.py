"""The sink's request metrics in plain numbers expose exactly what prometheus-client's own
histogram and gauge would, for the same requests."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest

from sysdesign_kit.observability._http_metrics import ClientRequestMetrics, LocalRequestMetrics

METHODS = ("GET", "POST", "_OTHER")
BUCKETS = (0.005, 0.01, 0.1, 1.0)
REQUESTS = [
    ("GET", "/a", "200", 0.001),
    ("GET", "/a", "200", 0.005),  # on a bound: that bucket
    ("GET", "/a", "500", 0.2),
    ("POST", "/b", "201", 5.0),  # above every bound: +Inf only
    ("_OTHER", "/a", "405", 0.0),
]


def _exposed(metrics: LocalRequestMetrics | ClientRequestMetrics) -> str:
    registry = CollectorRegistry()
    if isinstance(metrics, LocalRequestMetrics):
        registry.register(metrics)
    else:
        registry.register(metrics.histogram)
        registry.register(metrics.gauge)
    series = {}
    for method, route, status, duration in REQUESTS:
        labels = (method, route, status)
        if labels not in series:
            series[labels] = metrics.series(labels)
        metrics.start(method)
        metrics.start("GET")
        metrics.end(series[labels], method, duration)
    text = generate_latest(registry).decode()
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 <t>", text)


def test_local_metrics_expose_what_prometheus_client_would() -> None:
    local = LocalRequestMetrics(namespace="shop", buckets=BUCKETS, methods=METHODS)
    client = ClientRequestMetrics(namespace="shop", buckets=BUCKETS, methods=METHODS)
    text = _exposed(local)
    assert text == _exposed(client)
    assert 'shop_http_server_active_requests{method="GET"} 5.0' in text
    assert 'le="0.005",method="GET",route="/a",status_code="200"} 2.0' in text
    assert 'le="1.0",method="POST",route="/b",status_code="201"} 0.0' in text
