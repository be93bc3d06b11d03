"""Observability: component events turned into Prometheus metrics, OpenTelemetry spans,
JSON logs and ``Server-Timing``; prometheus-client and opentelemetry are imported lazily,
only by the sinks that need them."""
