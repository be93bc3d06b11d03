"""The product service: ``GET /api/v1/products/{id}`` reading through a cache (cache-aside).

The seed's read path: check the cache; on a miss query the database, write the cache and
return. Here that is one `Cache` ("products") in front of the simulated `ProductDB`:

- fresh for an hour (the seed's product TTL), so popular products cost no query;
- a cold product read by many callers at once is queried once (single-flight), the others
  wait for that answer (``coalesced``);
- for a minute past the hour a product is still served at once while one background query
  refreshes it (stale-while-revalidate);
- for a day past the hour, when the database fails, the last good copy is served instead
  of an error (stale-if-error): a product page a few hours old beats an error page;
- "no such product" is remembered for 30 s (negative caching), so a client probing
  unknown ids does not query the database on every request.

``DELETE /api/v1/products/{id}`` (the ``admin`` role; the gateway's RBAC checks it first)
deletes the row and drops the product's cached copy, so the next read asks the database and
is answered 404 (then remembered as missing for the negative TTL).

A product carries the seed's ``Cache-Control: max-age=300``; it and a 404 carry ``X-Cache``
(``HIT``, ``MISS``, ``STALE``, ``COALESCED``): how the cache answered this request.

``GET /api/v1/products/cache`` shows the counters (from the cache's own events, which
also reach ``/metrics``) and the database's queries. Operators (the ``admin`` scope) have
``POST /admin/products/db-outage`` (``{"down": true}``) to fail the database and recover it,
``POST /admin/products/db-latency`` (``{"seconds": 0.05}``) to slow its queries, and
``POST /admin/products/cache/expire``, which ages every cached product past its TTL and the
stale-while-revalidate minute (the cache's clock moves forward), to watch stale-if-error
work without waiting an hour.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from contextvars import ContextVar
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_system.problems import problem
from reference_system.product_db import DatabaseUnavailable, Product, ProductDB
from sysdesign_kit.cache import PRODUCT_TTL, Cache, CachePolicy
from sysdesign_kit.clock import Clock
from sysdesign_kit.events import CacheAccessed, CacheLoaded, Event, Listener
from sysdesign_kit.principal import get_principal

__all__ = ["PRODUCT_CACHE", "ProductService", "ProductStats"]

#: The product cache's settings (seconds): the seed's hour, and the windows described above.
PRODUCT_CACHE = CachePolicy(
    ttl=PRODUCT_TTL, stale_while_revalidate=60.0, stale_if_error=86_400.0, negative_ttl=30.0
)

# ASCII digits only (str.isdigit would accept "١٢٣"), and few enough that int() stays cheap.
_ID = re.compile(r"[0-9]{1,18}")
_MAX_BODY = 4096
_HEADERS = {"Cache-Control": "max-age=300"}  # the seed's API responses

# How the cache answered the request running in this context (set by the route, filled in
# by the cache's events, which it publishes synchronously from the request's own task).
_outcomes: ContextVar[list[str] | None] = ContextVar("product_cache_outcomes", default=None)


class _ShiftedClock:
    """The app's clock, with wall time moved forward by ``shift`` seconds.

    The cache judges its entries by wall time; moving only that ages every entry at once.
    Monotonic time (load durations, the memory backend's own expiry) is left alone.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.shift = 0.0
        self.monotonic = clock.monotonic
        self.monotonic_ns = clock.monotonic_ns
        self.sleep = clock.sleep

    def time(self) -> float:
        return self._clock.time() + self.shift


class ProductStats:
    """Listener: the product cache's lookups and loads, counted by outcome.

    Lookups are ``hit``, ``miss``, ``stale`` and ``coalesced`` (`CacheAccessed`); a read
    served stale because the database failed counts a ``miss`` (it tried) and a
    ``stale``. Loads are ``loaded``, ``missing``, ``failed`` and ``refreshed``
    (`CacheLoaded`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lookups: Counter[str] = Counter()
        self.loads: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        if isinstance(event, CacheAccessed) and event.name == self.name:
            self.lookups[event.outcome] += 1
            seen = _outcomes.get()
            if seen is not None:
                seen.append(event.outcome)
        elif isinstance(event, CacheLoaded) and event.name == self.name:
            self.loads[event.outcome] += 1

    def hit_ratio(self) -> float:
        """Hits over all lookups (0 before the first)."""
        total = sum(self.lookups.values())
        return self.lookups["hit"] / total if total else 0.0


class ProductService:
    """The product routes, their cache and the database behind it.

    Args:
        db: the product database.
        clock: the cache's clock (the app's).
        listeners: receive the cache's events (the app's sink among them).
    """

    def __init__(self, db: ProductDB, *, clock: Clock, listeners: list[Listener]) -> None:
        self.db = db
        self.stats = ProductStats("products")
        self._clock = _ShiftedClock(clock)
        self.cache = Cache(
            "products",
            ttl=PRODUCT_CACHE.ttl,
            stale_while_revalidate=PRODUCT_CACHE.stale_while_revalidate,
            stale_if_error=PRODUCT_CACHE.stale_if_error,
            negative_ttl=PRODUCT_CACHE.negative_ttl,
            value_type=Product | None,
            # Products are frozen: every reader may share the one cached object.
            share_objects=True,
            clock=self._clock,
            listeners=[*listeners, self.stats],
        )
        self.routes = [
            Route("/api/v1/products/cache", self.cache_status, methods=["GET"]),
            Route("/api/v1/products/{product_id}", self.get_product, methods=["GET"]),
            Route("/api/v1/products/{product_id}", self.delete_product, methods=["DELETE"]),
            Route("/admin/products/db-outage", self.db_outage, methods=["POST"]),
            Route("/admin/products/db-latency", self.db_latency, methods=["POST"]),
            Route("/admin/products/cache/expire", self.expire, methods=["POST"]),
        ]

    async def lookup(self, product_id: int) -> Product | None:
        """The product through the cache, or None if there is none (the order service's
        read).

        Raises:
            DatabaseUnavailable: the database failed and no copy of it is cached.
        """
        product: Product | None = await self.cache.get_or_load(
            _key(product_id), lambda: self.db.get(product_id)
        )
        return product

    async def get_product(self, request: Request) -> Response:
        """One product as JSON; 422 for an id that is not a positive integer, 404 if unknown,
        503 if the database fails and no copy of it is cached."""
        product_id = _product_id(request)
        if isinstance(product_id, Response):
            return product_id
        seen: list[str] = []
        token = _outcomes.set(seen)
        try:
            product = await self.lookup(product_id)
        except DatabaseUnavailable:
            return problem(503, "the product database is unavailable and no copy is cached")
        finally:
            _outcomes.reset(token)
        answered = seen[-1].upper() if seen else "HIT"
        if product is None:
            # Remembered here for the negative TTL; clients are not told to keep it.
            return problem(404, f"no product with id {product_id}", headers={"X-Cache": answered})
        return JSONResponse(asdict(product), headers={**_HEADERS, "X-Cache": answered})

    async def delete_product(self, request: Request) -> Response:
        """Delete a product (role ``admin``): 204, 404 if there is none, 503 if the database
        fails. Its cached copy goes either way, so no read is answered from it after."""
        product_id = _product_id(request)
        if isinstance(product_id, Response):
            return product_id
        principal = get_principal(request.scope)
        # The gateway's RBAC refuses these first; checked again for an app run without it.
        if principal is None or "admin" not in principal.roles:
            return problem(403, "deleting products needs the admin role")
        try:
            deleted = await self.db.delete(product_id)
        except DatabaseUnavailable:
            return problem(503, "the product database is unavailable; nothing was deleted")
        await self.cache.delete(_key(product_id))
        if not deleted:
            return problem(404, f"no product with id {product_id}")
        return Response(status_code=204)

    def status(self) -> dict[str, object]:
        """The cache's counters and the database's, as ``GET /api/v1/products/cache`` shows."""
        lookups, loads = self.stats.lookups, self.stats.loads
        return {
            "name": self.cache.name,
            "ttl": PRODUCT_CACHE.ttl,
            "stale_while_revalidate": PRODUCT_CACHE.stale_while_revalidate,
            "stale_if_error": PRODUCT_CACHE.stale_if_error,
            "negative_ttl": PRODUCT_CACHE.negative_ttl,
            "hits": lookups["hit"],
            "misses": lookups["miss"],
            "stale": lookups["stale"],
            "coalesced": lookups["coalesced"],
            "hit_ratio": round(self.stats.hit_ratio(), 4),
            "loads": dict(sorted(loads.items())),
            "db_queries": self.db.queries,
            "db_failed_queries": self.db.failed,
            "db_down": self.db.down,
            "db_latency": self.db.latency,
            "expired_by_operator": round(self._clock.shift, 3),
        }

    async def cache_status(self, request: Request) -> Response:
        """The counters, for everyone (like the payment breaker's status)."""
        return JSONResponse(self.status())

    async def db_outage(self, request: Request) -> Response:
        """Take the database down or bring it back (admin scope)."""
        document, refused = await _admin_json(request)
        if refused is not None:
            return refused
        down = document.get("down")
        if not isinstance(down, bool):
            return problem(422, 'expected {"down": true | false}')
        self.db.down = down
        return JSONResponse(self.status())

    async def db_latency(self, request: Request) -> Response:
        """Set how long each database query takes (admin scope)."""
        document, refused = await _admin_json(request)
        if refused is not None:
            return refused
        seconds = document.get("seconds")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= 10
        ):
            return problem(422, 'expected {"seconds": 0..10}')
        self.db.latency = float(seconds)
        return JSONResponse(self.status())

    async def expire(self, request: Request) -> Response:
        """Age every cached product past its TTL and stale-while-revalidate window (admin).

        The cache's wall clock moves forward, so each entry is as old as if that much time
        had passed: the next read of it queries the database, and gets the stale copy if
        the database fails (stale-if-error). Entries loaded afterwards are fresh as usual.
        """
        _, refused = await _admin_json(request, body=False)
        if refused is not None:
            return refused
        self._clock.shift += PRODUCT_CACHE.ttl + PRODUCT_CACHE.stale_while_revalidate
        return JSONResponse(self.status())


def _key(product_id: int) -> str:
    return f"product:{product_id}"


def _product_id(request: Request) -> int | Response:
    """The path's product id, or the 422 to answer for one that is not a positive integer."""
    raw: str = request.path_params["product_id"]
    if not _ID.fullmatch(raw) or int(raw) == 0:
        return problem(422, f"product id must be a positive integer, got {raw[:40]!r}")
    return int(raw)


async def _admin_json(
    request: Request, *, body: bool = True
) -> tuple[dict[str, Any], Response | None]:
    """The request's JSON object, or the problem to answer: 401/403 without the admin
    scope, 422 for a body that is not a JSON object."""
    principal = get_principal(request.scope)
    if principal is None:
        return {}, problem(401, "an API key with the admin scope is required")
    if "admin" not in principal.scopes:
        return {}, problem(403, "the admin scope is required")
    if not body:
        return {}, None
    raw = await request.body()
    try:
        document = json.loads(raw) if len(raw) <= _MAX_BODY else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return {}, problem(422, "expected a JSON object")
    return document, None
