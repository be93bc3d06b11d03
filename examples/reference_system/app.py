"""``create_app``: the reference system's edge and its services as one Starlette app.

The request path follows the seed, outermost first::

    Observability (request id, timeline, events, Server-Timing)
      -> ApiKeyAuth (X-API-Key) -> JWT authentication (Authorization: Bearer)
      -> RateLimitMiddleware (per tier + per IP) -> RejectUnknownKey, refused tokens
         (both answered here, below the limiter, so guesses count against the limits)
      -> RBAC (route rules) -> validation (msgspec body schemas) -> routes
           /live /ready /health /metrics /.well-known/jwks.json
           /api/v1/products/{id}   GET, DELETE    product service (cache + DB)
           /api/v1/orders, /{id}   POST, GET      order service
           /api/v1/users/{id}      GET            user service
           /api/v1/payments ...                   -> payment service (breaker, retries)

Every layer reports through events: the limiter's decisions, the middleware's request
start/finish (with the stage timings) and the health readings all reach one
``PrometheusSink``, served at ``/metrics``, and any ``listeners`` given; so do the
gateway's (authentication and RBAC refusals). Later issues put the WAF and the load balancer
in this chain.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from reference_system.auth import DEMO_KEYS, ApiKeyAuth, RejectUnknownKey
from reference_system.demo_keys import JWKS_PATH, DemoKeys, default_keys
from reference_system.gateway import authentication, authorization, validation
from reference_system.health import health_registry
from reference_system.orders import SCHEMAS, OrderService
from reference_system.payment_service import PaymentService
from reference_system.payments import Payments
from reference_system.problems import http_exception_handler
from reference_system.product_db import ProductDB
from reference_system.products import ProductService
from reference_system.users import UserService
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.events import Listener
from sysdesign_kit.gateway.deferred import AnswerDeferred
from sysdesign_kit.health import Check, HealthApp
from sysdesign_kit.observability import ObservabilityMiddleware
from sysdesign_kit.observability.metrics_endpoint import metrics_app
from sysdesign_kit.observability.prometheus import PrometheusSink
from sysdesign_kit.principal import Principal
from sysdesign_kit.ratelimit.backend import LimiterBackend
from sysdesign_kit.ratelimit.middleware import DEFAULT_EXEMPT_PATHS, RateLimitMiddleware
from sysdesign_kit.ratelimit.tiers import tiered_limits

__all__ = ["create_app"]


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    # The registry's first readings are taken before the server accepts traffic; on
    # shutdown /ready fails first (draining), then the checks stop.
    async with app.state.health:
        yield
    await app.state.payments.aclose()
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
    checks: Iterable[Check] = (),
    payments_clock: Clock | None = None,
    payments_rng: random.Random | None = None,
    jwt_keys: DemoKeys | None = None,
    jwt_auth: bool = True,
) -> Starlette:
    """Build the reference system.

    Args:
        backend: where limiter state lives: a backend, a URL (``"redis://..."``) or None
            for memory.
        clock: the limiter's clock (a `ManualClock` in tests and the scripted demo).
            Health checks and request timings always use real time.
        listeners: receive every event: the limiter's decisions and backend failures,
            each request's start and finish, the health readings.
        keys: API key -> principal; the demo keys by default.
        checks: health checks beyond the event loop and disk (e.g. a ``RedisCheck``).
        payments_clock: the clock of the payment client's breaker, retries and budget,
            and of the payment service's outages (default: ``clock``). The scripted demo
            passes a `VirtualClock`, whose sleeps move it, so retry waits take no time.
        payments_rng: the payment retries' jitter source (the scripted demo seeds one).
        jwt_keys: the key signing the demo's tokens, published at ``/.well-known/jwks.json``
            (default: one generated per process).
        jwt_auth: accept those tokens (``Authorization: Bearer``) beside the API keys, ahead
            of the rate limiter, and apply the RBAC rules of `reference_system.gateway`
            (on by default; off leaves the API keys alone and no route rules). Tokens'
            ``exp`` and ``iat`` are judged on ``clock``.

    Returns:
        The app. ``app.state.limits`` is its `TieredLimits`, ``app.state.health`` its
        `HealthRegistry` (started by the lifespan, or by ``async with`` when the app runs
        without one), ``app.state.metrics`` the Prometheus registry behind ``/metrics``,
        ``app.state.payments`` the `Payments` routes with their breaker and the service,
        ``app.state.products`` the `ProductService` with its cache and database,
        ``app.state.orders`` the `OrderService`, ``app.state.users`` the `UserService`,
        ``app.state.jwt_keys`` the `DemoKeys`.
        On lifespan shutdown the app also closes the limiter backend's connections.
    """
    # A registry of its own, not prometheus-client's global one: several apps (tests,
    # the scripted run) can live in one process without clashing metric names.
    metrics = CollectorRegistry()
    sink = PrometheusSink(registry=metrics)
    everyone: list[Listener] = [sink, *listeners]
    # tiered_limits' defaults are the seed's tiers: anonymous 20/min, free 100/min,
    # premium 1000/min, and 500/min per IP on top.
    limits = tiered_limits(backend=backend, clock=clock, listeners=everyone)
    health = health_registry(backend=limits.backend.kind, checks=checks, listeners=everyone)
    payments_clock = clock if payments_clock is None else payments_clock
    payments = Payments(
        PaymentService(payments_clock),
        clock=payments_clock,
        listeners=everyone,
        rng=payments_rng,
    )
    # The simulated product database answers at once until told otherwise (the scripted
    # demo's product scenario, or POST /admin/products/db-latency when serving).
    products = ProductService(ProductDB(clock), clock=clock, listeners=everyone)
    orders = OrderService(products, clock=clock)
    users = UserService(keys, orders=orders)
    jwt_keys = default_keys() if jwt_keys is None else jwt_keys
    routes: list[BaseRoute] = [
        *HealthApp(health, lifespan=False).routes(),
        Route("/metrics", metrics_app(metrics), name="metrics"),
        *products.routes,
        *orders.routes,
        *users.routes,
        *payments.routes,
        *jwt_keys.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                ObservabilityMiddleware,
                listeners=everyone,
                server_timing=True,
                routes=routes,
            ),
            Middleware(ApiKeyAuth, keys=keys),
            *(
                [
                    authentication(
                        jwt_keys,
                        clock=clock,
                        listeners=everyone,
                        refused_anyway=limits.over_ip_limit,
                    )
                ]
                if jwt_auth
                else []
            ),
            # The JWKS is what clients need to check tokens: never withheld by a limit.
            Middleware(
                RateLimitMiddleware, limits=limits, exempt_paths=(*DEFAULT_EXEMPT_PATHS, JWKS_PATH)
            ),
            Middleware(RejectUnknownKey),
            *([Middleware(AnswerDeferred)] if jwt_auth else []),
            *([authorization(listeners=everyone)] if jwt_auth else []),
            validation(SCHEMAS),
        ],
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=_lifespan,
    )
    app.state.limits = limits
    app.state.health = health
    app.state.metrics = metrics
    app.state.payments = payments
    app.state.products = products
    app.state.orders = orders
    app.state.users = users
    app.state.jwt_keys = jwt_keys
    return app
