"""``create_app``: the reference system's edge and product service as one Starlette app.

The request path follows the seed, outermost first::

    ApiKeyAuth -> RateLimitMiddleware (per tier + per IP) -> RejectUnknownKey -> routes
                                                                             /health
                                                                             /api/v1/products/{id}

Later issues put the WAF, gateway, load balancer and the other services in this chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from reference_system import products
from reference_system.auth import DEMO_KEYS, ApiKeyAuth, RejectUnknownKey
from reference_system.health import health_routes
from reference_system.problems import http_exception_handler
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.events import Listener
from sysdesign_kit.principal import Principal
from sysdesign_kit.ratelimit.backend import LimiterBackend
from sysdesign_kit.ratelimit.middleware import RateLimitMiddleware
from sysdesign_kit.ratelimit.tiers import tiered_limits

__all__ = ["create_app"]


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    # A Redis backend's async connections belong to the server's event loop: close them
    # while it still runs.
    aclose = getattr(app.state.limits.backend, "aclose", None)
    if aclose is not None:
        await aclose()


def create_app(
    *,
    backend: LimiterBackend | str | None = None,
    clock: Clock = SYSTEM_CLOCK,
    listeners: Iterable[Listener] = (),
    keys: Mapping[str, Principal] = DEMO_KEYS,
) -> Starlette:
    """Build the reference system.

    Args:
        backend: where limiter state lives: a backend, a URL (``"redis://..."``) or None
            for memory.
        clock: the limiter's clock (a `ManualClock` in tests and the scripted demo).
        listeners: receive the limiter's events (decisions, backend failures).
        keys: API key -> principal; the demo keys by default.

    Returns:
        The app; ``app.state.limits`` is its `TieredLimits`. On lifespan shutdown the app
        closes the limiter backend's connections.
    """
    # tiered_limits' defaults are the seed's tiers: anonymous 20/min, free 100/min,
    # premium 1000/min, and 500/min per IP on top.
    limits = tiered_limits(backend=backend, clock=clock, listeners=listeners)
    routes = [*health_routes(backend=limits.backend.kind, clock=clock), *products.routes]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ApiKeyAuth, keys=keys),
            Middleware(RateLimitMiddleware, limits=limits),
            Middleware(RejectUnknownKey),
        ],
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=_lifespan,
    )
    app.state.limits = limits
    return app
