"""The package as a user installs it: core import without extras, typed, versioned."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata, resources

import sysdesign_kit

OPTIONAL = ["redis", "starlette", "fastapi", "httpx", "jwt", "prometheus_client", "opentelemetry"]


def test_core_imports_without_optional_packages() -> None:
    # Make every optional package unimportable, then import the core and use a limiter.
    blocker = "; ".join(f"sys.modules[{name!r}] = None" for name in OPTIONAL)
    code = (
        f"import sys; {blocker}; "
        "import sysdesign_kit, sysdesign_kit.ratelimit, sysdesign_kit.breaker; "
        "import sysdesign_kit.retry; "
        "from sysdesign_kit import CircuitBreaker, RateLimiter, Retry; "
        "assert RateLimiter('1/second').sync.hit('k').allowed; "
        "assert CircuitBreaker('b').call(int, '7') == 7; "
        "assert Retry(on=OSError).call(int, '8') == 8; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_distribution_metadata() -> None:
    dist = metadata.distribution("sysdesign-kit")
    assert dist.version == sysdesign_kit.__version__
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    assert {"redis", "jwt", "http", "asgi", "metrics", "otel", "all", "dev"} <= extras
    scripts = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
    assert "sysdesign-kit" in scripts


def test_py_typed_marker_ships() -> None:
    assert resources.files("sysdesign_kit").joinpath("py.typed").is_file()
