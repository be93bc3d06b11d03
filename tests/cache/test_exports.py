"""The cache package's exported names are a contract (sorted, resolvable, documented)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import sysdesign_kit.cache as cache

EXPORTS = [
    "DEFAULT_MAX_KEY_LENGTH",
    "DEFAULT_MAX_VALUE_BYTES",
    "PRODUCT_TTL",
    "Cache",
    "CacheBackend",
    "CacheMapping",
    "CachePolicy",
    "Decorator",
    "Envelope",
    "MemoryBackend",
    "Serializer",
    "SyncCache",
    "Unserializable",
    "ValueTooLarge",
    "cached",
    "default_cache",
    "fit_key",
    "should_refresh_early",
]


def test_exports_are_pinned_and_sorted() -> None:
    assert cache.__all__ == EXPORTS
    assert sorted(EXPORTS, key=lambda name: (not name.isupper(), name)) == EXPORTS


def test_every_export_resolves_and_has_a_docstring() -> None:
    for name in cache.__all__:
        value = getattr(cache, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_importing_the_package_needs_no_optional_dependency() -> None:
    code = (
        "import sys, sysdesign_kit.cache; "
        "assert not {'redis', 'prometheus_client', 'opentelemetry'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
