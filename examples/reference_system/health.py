"""``GET /health``: is this instance up, and what does it run on.

The seed's load balancer polls ``/health`` every 10 s. The rate limiter exempts it, so a
throttled client never makes an instance look down. Later issues replace this with the kit's
health component (database, Redis, disk checks, ``/ready`` and ``/live``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sysdesign_kit import __version__
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock

__all__ = ["health_routes"]


def health_routes(*, backend: str, clock: Clock = SYSTEM_CLOCK) -> list[Route]:
    """The health route, reporting ``backend`` (where limiter state lives) and uptime.

    Args:
        backend: the rate-limit backend kind shown in the body (``"memory"``, ``"redis"``).
        clock: where uptime is measured from.
    """
    started = clock.monotonic()

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "service": "reference-system",
                "version": __version__,
                "uptime_s": round(clock.monotonic() - started, 3),
                "ratelimit_backend": backend,
            },
            headers={"Cache-Control": "no-store"},
        )

    return [Route("/health", health, methods=["GET"])]
