"""Health: checks run in the background, and the /live, /ready and /health endpoints.

::

    registry = HealthRegistry(
        [
            EventLoopLagCheck(),                        # /live and /ready
            RedisCheck("redis://localhost:6379/0"),     # /ready
            DatabaseCheck(connect=lambda: sqlite3.connect("app.db")),
            HttpCheck("https://payments.internal/health", name="payments", critical=False),
            DiskSpaceCheck("/var/lib/app", min_free_percent=10),
        ],
        version="1",
        drain_signals=[signal.SIGTERM],
        drain_delay=5,
    )
    health = HealthApp(registry, details=require_token(os.environ["HEALTH_TOKEN"]))
    app = Starlette(routes=[*health.routes(), ...], lifespan=registry.lifespan)

Importing this package needs neither redis nor httpx: `RedisCheck` is loaded on first use
and `HttpCheck` imports httpx when it first probes.
"""

from typing import TYPE_CHECKING, Any

from sysdesign_kit.health.access import DetailsPolicy, require_token
from sysdesign_kit.health.body import HEALTH_JSON, ServiceInfo
from sysdesign_kit.health.checks import (
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    CallableCheck,
    Check,
    CheckOptions,
)
from sysdesign_kit.health.database import DatabaseCheck
from sysdesign_kit.health.endpoints import MAX_EXCLUDES, MAX_QUERY_BYTES, HealthApp
from sysdesign_kit.health.http_check import HttpCheck
from sysdesign_kit.health.reading import Observation, Reading, Status
from sysdesign_kit.health.registry import Endpoint, HealthRegistry
from sysdesign_kit.health.system import DiskSpaceCheck, EventLoopLagCheck

if TYPE_CHECKING:
    from sysdesign_kit.health.redis_check import RedisCheck

__all__ = [
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
]


def __getattr__(name: str) -> Any:
    # Deferred so that importing sysdesign_kit.health never requires redis-py.
    if name == "RedisCheck":
        from sysdesign_kit.health.redis_check import RedisCheck

        return RedisCheck
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
