"""Observability: component events turned into Prometheus metrics, OpenTelemetry spans,
JSON logs and ``Server-Timing``; prometheus-client and opentelemetry are imported lazily,
only by the sinks that need them."""

import importlib
from typing import TYPE_CHECKING, Any

from sysdesign_kit.observability.logs import AccessLog, JsonFormatter, RequestIdFilter, json_handler
from sysdesign_kit.observability.middleware import (
    ObservabilityMiddleware,
    RequestObserver,
    RequestTracing,
)
from sysdesign_kit.observability.request_id import (
    REQUEST_ID_SCOPE_KEY,
    get_request_id,
    new_request_id,
)
from sysdesign_kit.observability.server_timing import render_server_timing

if TYPE_CHECKING:
    from sysdesign_kit.observability.httpx_tracing import AsyncTracingTransport, TracingTransport
    from sysdesign_kit.observability.metrics_endpoint import metrics_app
    from sysdesign_kit.observability.prometheus import PrometheusSink
    from sysdesign_kit.observability.tracing import RequestTracer
    from sysdesign_kit.observability.tracing_sink import TracingSink

__all__ = [
    "REQUEST_ID_SCOPE_KEY",
    "AccessLog",
    "AsyncTracingTransport",
    "JsonFormatter",
    "ObservabilityMiddleware",
    "PrometheusSink",
    "RequestIdFilter",
    "RequestObserver",
    "RequestTracer",
    "RequestTracing",
    "TracingSink",
    "TracingTransport",
    "get_request_id",
    "json_handler",
    "metrics_app",
    "new_request_id",
    "render_server_timing",
]

# Names whose modules import an optional package: resolved on first access (PEP 562), so
# importing this package needs neither prometheus-client nor opentelemetry.
_LAZY = {
    "PrometheusSink": "sysdesign_kit.observability.prometheus",
    "metrics_app": "sysdesign_kit.observability.metrics_endpoint",
    "AsyncTracingTransport": "sysdesign_kit.observability.httpx_tracing",
    "RequestTracer": "sysdesign_kit.observability.tracing",
    "TracingSink": "sysdesign_kit.observability.tracing_sink",
    "TracingTransport": "sysdesign_kit.observability.httpx_tracing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
