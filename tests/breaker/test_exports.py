"""The breaker package's exported names are a contract (sorted, resolvable, documented)."""

from __future__ import annotations

import inspect

import sysdesign_kit.breaker as breaker

EXPORTS = [
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
]


def test_exports_are_pinned_and_sorted() -> None:
    assert breaker.__all__ == EXPORTS
    assert sorted(EXPORTS, key=lambda name: (not name.isupper(), name)) == EXPORTS


def test_every_export_resolves_and_has_a_docstring() -> None:
    for name in breaker.__all__:
        value = getattr(breaker, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_importing_the_package_does_not_import_redis() -> None:
    import subprocess
    import sys

    code = (
        "import sys, sysdesign_kit.breaker as b; assert 'redis' not in sys.modules; "
        "b.RedisBreakerState; assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
