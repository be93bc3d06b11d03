"""``/live``, ``/ready`` and ``/health``: the kit's health component on the reference system.

The seed's load balancer polls the service every 10 s. The checks run in the background
(`HealthRegistry`), so a probe only reads cached readings and never reaches Redis:

- ``eventloop:lag`` (at ``/live`` and ``/ready``): a blocked event loop is the one thing
  a restart fixes;
- ``disk:freeSpace``: non-critical, so a filling disk shows as ``warn`` (still 200);
- ``redis:responseTime`` (at ``/ready``) when the limiter state lives in Redis.

Every endpoint answers ``application/health+json`` (draft-inadarei-api-health-check-06).
The rate limiter exempts these paths, so a throttled client never makes an instance look
down.
"""

from __future__ import annotations

from collections.abc import Iterable

from sysdesign_kit import __version__
from sysdesign_kit.events import Listener
from sysdesign_kit.health import Check, DiskSpaceCheck, EventLoopLagCheck, HealthRegistry

__all__ = ["health_registry"]


def health_registry(
    *, backend: str, checks: Iterable[Check] = (), listeners: Iterable[Listener] = ()
) -> HealthRegistry:
    """The reference system's checks (event loop, disk, then ``checks``) in a registry.

    Args:
        backend: where limiter state lives (``"memory"``, ``"redis"``), named in the
            document's ``description``.
        checks: further checks, such as a ``RedisCheck`` of the limiter's Redis.
        listeners: receive a ``HealthChecked`` event per reading (a Prometheus gauge).
    """
    return HealthRegistry(
        [EventLoopLagCheck(), DiskSpaceCheck(".", critical=False), *checks],
        listeners=listeners,
        version=__version__,
        service_id="reference-system",
        description=f"the sysdesign_kit reference system; rate-limit state in {backend}",
    )
