"""TracingSink: component events become span events on the request's span."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from sysdesign_kit.events import (
    AuthFailed,
    AuthSucceeded,
    BackendFailure,
    BreakerRejected,
    BreakerTransitioned,
    CacheAccessed,
    Event,
    HealthChecked,
    Publisher,
    RateLimitDecided,
    RequestFinished,
    RequestStarted,
    RetryAttempted,
    RetryGaveUp,
    subscribe,
)
from sysdesign_kit.observability.tracing_sink import TracingSink

EVENTS: list[tuple[Event, str, dict[str, object]]] = [
    (
        RateLimitDecided("limiter", "free", "ip:203.0.113.7", False, 100, 0, 1.5, 1),
        "sysdesign_kit.rate_limit.decided",
        {
            "sysdesign_kit.rate_limit.policy": "free",
            "sysdesign_kit.rate_limit.allowed": False,
            "sysdesign_kit.rate_limit.limit": 100,
            "sysdesign_kit.rate_limit.remaining": 0,
            "sysdesign_kit.rate_limit.retry_after": 1.5,
            "sysdesign_kit.rate_limit.cost": 1,
            "sysdesign_kit.rate_limit.shadow": False,
            "sysdesign_kit.rate_limit.degraded": False,
        },
    ),
    (
        BackendFailure("limiter", "redis", "evalsha", "x" * 1000, "fail_open"),
        "sysdesign_kit.backend.failure",
        {
            "sysdesign_kit.backend.name": "redis",
            "sysdesign_kit.backend.operation": "evalsha",
            "sysdesign_kit.backend.error": "x" * 255 + "…",  # bounded
            "sysdesign_kit.backend.outcome": "fail_open",
        },
    ),
    (
        BreakerTransitioned("breaker", "payments", "closed", "open"),
        "sysdesign_kit.breaker.transitioned",
        {
            "sysdesign_kit.breaker.name": "payments",
            "sysdesign_kit.breaker.previous": "closed",
            "sysdesign_kit.breaker.state": "open",
        },
    ),
    (
        BreakerRejected("breaker", "payments", 30.0),
        "sysdesign_kit.breaker.rejected",
        {"sysdesign_kit.breaker.name": "payments", "sysdesign_kit.breaker.retry_after": 30.0},
    ),
    (
        RetryAttempted("retry", "orders", 1, 1.0, "ConnectError"),
        "sysdesign_kit.retry.attempted",
        {
            "sysdesign_kit.retry.name": "orders",
            "sysdesign_kit.retry.attempt": 1,
            "sysdesign_kit.retry.delay": 1.0,
            "sysdesign_kit.retry.error": "ConnectError",
        },
    ),
    (
        RetryGaveUp("retry", "orders", 3, "ConnectError", "attempts"),
        "sysdesign_kit.retry.gave_up",
        {
            "sysdesign_kit.retry.name": "orders",
            "sysdesign_kit.retry.attempts": 3,
            "sysdesign_kit.retry.error": "ConnectError",
            "sysdesign_kit.retry.reason": "attempts",
        },
    ),
    (
        CacheAccessed("cache", "products", "stale"),
        "sysdesign_kit.cache.accessed",
        {"sysdesign_kit.cache.name": "products", "sysdesign_kit.cache.outcome": "stale"},
    ),
    (
        AuthSucceeded("gateway", "jwt", "user-17"),
        "sysdesign_kit.auth.succeeded",
        {"sysdesign_kit.auth.scheme": "jwt", "sysdesign_kit.auth.subject": "user-17"},
    ),
    (
        AuthFailed("gateway", "api_key", "unknown_key"),
        "sysdesign_kit.auth.failed",
        {"sysdesign_kit.auth.scheme": "api_key", "sysdesign_kit.auth.reason": "unknown_key"},
    ),
]


@pytest.mark.parametrize(
    ("event", "name", "attributes"), EVENTS, ids=[type(e).__name__ for e, _, _ in EVENTS]
)
def test_component_events_become_span_events(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    event: Event,
    name: str,
    attributes: dict[str, object],
) -> None:
    with provider.get_tracer("test").start_as_current_span("request"):
        TracingSink()(event)
    (span,) = exporter.get_finished_spans()
    (recorded,) = span.events
    assert recorded.name == name
    assert dict(recorded.attributes or {}) == {
        "sysdesign_kit.component": event.component,
        **attributes,
    }


def test_rate_limit_keys_stay_out_of_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with provider.get_tracer("test").start_as_current_span("request"):
        TracingSink()(RateLimitDecided("limiter", "free", "apikey:s3cr3t", True, 5, 4, 0.0, 1))
    (span,) = exporter.get_finished_spans()
    assert "s3cr3t" not in repr(dict(span.events[0].attributes or {}))


@pytest.mark.parametrize(
    "event",
    [
        RequestStarted("observability", "GET", "/r", "id-1"),
        RequestFinished("observability", "GET", "/r", "id-1", 200, 0.01),
        HealthChecked("health", "redis:responseTime", "pass", 0.001),
    ],
)
def test_request_and_health_events_are_not_span_events(
    provider: TracerProvider, exporter: InMemorySpanExporter, event: Event
) -> None:
    with provider.get_tracer("test").start_as_current_span("request"):
        TracingSink()(event)
    (span,) = exporter.get_finished_spans()
    assert span.events == ()


def test_without_a_recording_span_nothing_happens(exporter: InMemorySpanExporter) -> None:
    unsampled = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    unsampled.add_span_processor(SimpleSpanProcessor(exporter))
    sink = TracingSink()
    sink(CacheAccessed("cache", "products", "hit"))  # no span at all
    with unsampled.get_tracer("test").start_as_current_span("request"):
        sink(CacheAccessed("cache", "products", "hit"))
    assert exporter.get_finished_spans() == ()


def test_subscribed_sink_reaches_every_component(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    component = Publisher()
    unsubscribe = subscribe(TracingSink())
    try:
        with provider.get_tracer("test").start_as_current_span("request"):
            component.publish(CacheAccessed("cache", "products", "miss"))
    finally:
        unsubscribe()
    (span,) = exporter.get_finished_spans()
    assert [event.name for event in span.events] == ["sysdesign_kit.cache.accessed"]
