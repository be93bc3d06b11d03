"""Observability: component events turned into Prometheus metrics, OpenTelemetry spans,
JSON logs and ``Server-Timing``; prometheus-client and opentelemetry are imported lazily,
only by the sinks that need them."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sysdesign_kit.observability.httpx_tracing import AsyncTracingTransport, TracingTransport
    from sysdesign_kit.observability.metrics_endpoint import metrics_app
    from sysdesign_kit.observability.prometheus import PrometheusSink
    from sysdesign_kit.observability.tracing import RequestTracer, TracingSink

__all__ = [
    "AsyncTracingTransport",
    "PrometheusSink",
    "RequestTracer",
    "TracingSink",
    "TracingTransport",
    "metrics_app",
]

# Names whose modules import an optional package: resolved on first access (PEP 562), so
# importing this package needs neither prometheus-client nor opentelemetry.
_LAZY = {
    "PrometheusSink": "sysdesign_kit.observability.prometheus",
    "metrics_app": "sysdesign_kit.observability.metrics_endpoint",
    "AsyncTracingTransport": "sysdesign_kit.observability.httpx_tracing",
    "RequestTracer": "sysdesign_kit.observability.tracing",
    "TracingSink": "sysdesign_kit.observability.tracing",
    "TracingTransport": "sysdesign_kit.observability.httpx_tracing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
