"""The exported names are a contract: changing them is a decision, not an accident."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "sysdesign_kit": [
        "SYSTEM_CLOCK",
        "BackendUnavailable",
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
        "SysdesignError",
        "SystemClock",
        "__version__",
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
        if callable(value) and not name.startswith("_") and name != "KeyFunc":
            assert (value.__doc__ or "").strip(), f"{module}.{name} has no docstring"
