"""The package's surface: its names, and that importing it needs no optional extra."""

from __future__ import annotations

import subprocess
import sys

import sysdesign_kit.health as health


def test_exports_are_sorted_and_resolve() -> None:
    names = health.__all__
    assert names == sorted(names, key=lambda name: (not name.isupper(), name))
    for name in names:
        assert getattr(health, name) is not None
    assert health.RedisCheck.__name__ == "RedisCheck"  # loaded on first use


def test_importing_health_needs_neither_redis_nor_httpx() -> None:
    code = (
        "import sys; import sysdesign_kit.health as h; "
        "h.HttpCheck('http://example.invalid/'); "
        "loaded = {'redis', 'httpx', 'starlette'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
