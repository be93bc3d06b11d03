"""Importing the cache package costs no optional dependency (its exports are pinned in
tests/test_public_api.py)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_needs_no_optional_dependency() -> None:
    code = (
        "import sys, sysdesign_kit.cache; "
        "assert not {'redis', 'prometheus_client', 'opentelemetry'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_redis_backend_is_imported_on_first_use() -> None:
    code = (
        "import sys, sysdesign_kit.cache as c; assert 'redis' not in sys.modules; "
        "c.RedisBackend; assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
