"""The exported names are a contract: changing them is a decision, not an accident."""

from __future__ import annotations

import importlib
import inspect

import pytest

EXPORTS = {
    "sysdesign_kit": [
        "SYSTEM_CLOCK",
        "BackendUnavailable",
        "BreakerRegistry",
        "CircuitBreaker",
        "CircuitOpen",
        "Clock",
        "ConfigurationError",
        "InvalidCost",
        "InvalidInput",
        "InvalidKey",
        "InvalidRate",
        "ManualClock",
        "RateLimitDecision",
        "RateLimited",
        "RateLimiter",
        "Rejected",
        "Retry",
        "RetryBudget",
        "SysdesignError",
        "SystemClock",
        "VirtualClock",
        "__version__",
        "current_attempt",
        "get_breaker",
        "hit_all",
        "hit_all_sync",
    ],
    "sysdesign_kit.ratelimit": [
        "ClientIP",
        "KeyFunc",
        "LimitRule",
        "MemoryBackend",
        "Rate",
        "RateLimitDecision",
        "RateLimitHeaders",
        "RateLimitMiddleware",
        "RateLimiter",
        "RedisBackend",
        "RuleSet",
        "SyncRateLimiter",
        "TieredLimits",
        "backend_from_url",
        "by_api_key",
        "by_ip",
        "by_route",
        "by_subject",
        "by_subject_or_ip",
        "hit_all",
        "hit_all_sync",
        "parse_rate",
        "rate_limited",
        "retry_after_seconds",
        "tiered_limits",
    ],
    "sysdesign_kit.observability": [
        "REQUEST_ID_SCOPE_KEY",
        "AccessLog",
        "AsyncTracingTransport",
        "JsonFormatter",
        "ObservabilityMiddleware",
        "PrometheusSink",
        "RequestIdFilter",
        "RequestTracer",
        "RequestTracing",
        "TracingSink",
        "TracingTransport",
        "get_request_id",
        "json_handler",
        "metrics_app",
        "new_request_id",
        "render_server_timing",
    ],
    "sysdesign_kit.breaker": [
        "NEVER_COUNTED",
        "BreakerPolicy",
        "BreakerRegistry",
        "BreakerStats",
        "CircuitBreaker",
        "CountWindow",
        "Default",
        "Degrade",
        "Fallback",
        "FromError",
        "LastGood",
        "Permit",
        "RedisBreakerState",
        "State",
        "Status",
        "TimeWindow",
        "Totals",
        "default_registry",
        "get_breaker",
    ],
    "sysdesign_kit.retry": [
        "JITTERS",
        "Attempt",
        "Backoff",
        "ExceptionTypes",
        "JitterName",
        "Outcome",
        "Retry",
        "RetryAfterHook",
        "RetryBudget",
        "current_attempt",
        "default_retry_after",
        "parse_retry_after",
        "retry",
    ],
    "sysdesign_kit.http": [
        "IDEMPOTENT_METHODS",
        "RETRY_ERRORS",
        "RETRY_STATUSES",
        "SEED_TIMEOUT",
        "SEED_TOTAL_TIMEOUT",
        "AsyncResilientTransport",
        "ResilientTransport",
        "default_retry",
    ],
    "sysdesign_kit.health": [
        "DEFAULT_INTERVAL",
        "DEFAULT_TIMEOUT",
        "HEALTH_JSON",
        "MAX_EXCLUDES",
        "MAX_QUERY_BYTES",
        "CallableCheck",
        "Check",
        "CheckOptions",
        "DatabaseCheck",
        "DetailsPolicy",
        "DiskSpaceCheck",
        "Endpoint",
        "EventLoopLagCheck",
        "HealthApp",
        "HealthRegistry",
        "HttpCheck",
        "Observation",
        "Reading",
        "RedisCheck",
        "ServiceInfo",
        "Status",
        "require_token",
    ],
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exports_are_pinned_and_sorted(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert exported == EXPORTS[module]
    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_every_export_resolves_and_has_a_docstring(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        value = getattr(mod, name)
        # Classes and functions; type aliases (KeyFunc, DetailsPolicy) carry no docstring.
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__doc__ or "").strip(), f"{module}.{name} has no docstring"
