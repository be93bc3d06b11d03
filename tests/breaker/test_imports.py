"""Importing the breaker package costs no optional dependency (its exports are pinned in
tests/test_public_api.py)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_does_not_import_redis() -> None:
    code = (
        "import sys, sysdesign_kit.breaker as b; assert 'redis' not in sys.modules; "
        "b.RedisBreakerState; assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
