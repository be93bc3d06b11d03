"""Service routing: a route table from path prefixes to services, and the ASGI router.

::

    router = ServiceRouter.to_upstreams({
        "users": "http://users:8000",
        "products": ["http://products-1:8000", "http://products-2:8000"],
        "orders": "http://orders:8000",
        "payments": "http://payments:8000",
    })  # SEED_ROUTES: /api/v1/users/* -> users, /products/*, /orders/*, /payments/*

A `ServiceRoute` maps a pattern to a service name. A pattern is a path prefix (``/api/v1/users``,
or with the seed's ``/*``, the same) whose segments are literal or ``{name}`` (any one
segment: ``/api/{version}/users``); it matches the prefix itself and everything below it,
on segment boundaries (``/api/v1/users`` and ``/api/v1/users/7``, not ``/api/v1/usersX``).
The most specific route wins: more segments first, then literal segments over templates.

Matching is done on the raw, percent-encoded path (``scope["raw_path"]``), the path the
upstream will receive: a prefix a client spelled with escapes (``/api/v1/%75sers``,
``/api/v1%2Fusers``) matches no route rather than reaching a service under a path that the
layers matching decoded paths (RBAC) read differently. For the same reason a path with a
``.`` or ``..`` segment (also as ``%2e``) is refused with 400: an upstream normalising it
could serve another service's resource. An unmatched path gets a 404 problem, or goes to
the ``fallback`` app (the gateway's own endpoints, for example).

A route keeps its prefix in the path sent upstream by default; ``strip_prefix=True`` sends
only what follows it (``/api/v1/users/7`` -> ``/7``). The router leaves the `ServiceRoute` in
``scope["sysdesign_kit.route"]`` and the upstream path in
``scope["sysdesign_kit.upstream_path"]`` for `ReverseProxy`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import ASGIApp, Receive, Scope, Send, run_lifespan, send_problem
from sysdesign_kit.gateway.proxy import (
    UPSTREAM_PATH_SCOPE_KEY,
    ReverseProxy,
    Upstream,
    UpstreamPicker,
)

__all__ = [
    "ROUTE_SCOPE_KEY",
    "SEED_ROUTES",
    "ServiceRoute",
    "ServiceRouteMatch",
    "ServiceRouter",
    "ServiceRoutes",
]

#: Where the router leaves the matched `ServiceRoute`.
ROUTE_SCOPE_KEY = "sysdesign_kit.route"

_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")
_PARAM = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """One line of the route table: requests under ``pattern`` go to ``service``.

    Args:
        pattern: ``/api/v1/users``, ``/api/v1/users/*`` (the same) or with ``{name}``
            segments (``/api/{version}/users``). Literal segments are written unescaped
            and may only hold characters that need no escaping in a path.
        service: the name of the service (a key of the router's services).
        strip_prefix: send the upstream only the part of the path after the prefix.

    Raises:
        ConfigurationError: a pattern that is not an absolute path of valid segments, or
            an empty service name.
    """

    pattern: str
    service: str
    strip_prefix: bool = False
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = self.pattern
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ConfigurationError(f"route pattern {pattern!r} must start with '/'")
        body = pattern[:-2] if pattern.endswith("/*") else pattern
        segments = tuple(s for s in body.strip("/").split("/") if s) if body != "/" else ()
        if body.strip("/") and len(segments) != body.strip("/").count("/") + 1:
            raise ConfigurationError(f"route pattern {pattern!r} has an empty segment")
        for segment in segments:
            if segment in (".", "..") or not (
                _PARAM.fullmatch(segment) or _SEGMENT.fullmatch(segment)
            ):
                raise ConfigurationError(
                    f"route pattern {pattern!r}: segment {segment!r} must be a literal "
                    "path segment or a {name} parameter"
                )
        if not isinstance(self.service, str) or not self.service:
            raise ConfigurationError(f"route {pattern!r} needs a service name")
        object.__setattr__(self, "segments", segments)


#: The seed's table: ``/api/v1/{users,products,orders,payments}/*`` to their services.
SEED_ROUTES: tuple[ServiceRoute, ...] = (
    ServiceRoute("/api/v1/users/*", "users"),
    ServiceRoute("/api/v1/products/*", "products"),
    ServiceRoute("/api/v1/orders/*", "orders"),
    ServiceRoute("/api/v1/payments/*", "payments"),
)


@dataclass(frozen=True, slots=True)
class ServiceRouteMatch:
    """A path matched: its route and the raw path the upstream gets."""

    route: ServiceRoute
    upstream_path: bytes


class _Compiled:
    __slots__ = ("literal", "literal_slash", "regex", "route")

    def __init__(self, route: ServiceRoute) -> None:
        self.route = route
        if any(_PARAM.fullmatch(s) for s in route.segments):
            parts = [
                rb"[^/]+" if _PARAM.fullmatch(s) else re.escape(s.encode()) for s in route.segments
            ]
            self.regex: re.Pattern[bytes] | None = re.compile(
                rb"/" + rb"/".join(parts) + rb"(?=/|\Z)"
            )
            self.literal = self.literal_slash = b""
        else:
            self.regex = None
            self.literal = b"".join(b"/" + s.encode() for s in route.segments)
            self.literal_slash = self.literal + b"/"

    def prefix_length(self, path: bytes) -> int:
        """How many bytes of ``path`` the route's prefix covers, or -1."""
        if self.regex is None:
            if path == self.literal or path.startswith(self.literal_slash):
                return len(self.literal)
            return -1
        found = self.regex.match(path)
        return found.end() if found else -1


class ServiceRoutes:
    """Routes, most specific first.

    Raises:
        ConfigurationError: two routes with the same pattern.
    """

    def __init__(self, routes: Iterable[ServiceRoute]) -> None:
        routes = tuple(routes)
        shapes: set[tuple[str, ...]] = set()
        for route in routes:
            if not isinstance(route, ServiceRoute):
                raise ConfigurationError(f"routes must be ServiceRoute objects, got {route!r}")
            shape = tuple("{}" if _PARAM.fullmatch(s) else s for s in route.segments)
            if shape in shapes:
                raise ConfigurationError(f"route {route.pattern!r} duplicates another route")
            shapes.add(shape)

        def specificity(route: ServiceRoute) -> tuple[int, int]:
            params = sum(1 for s in route.segments if _PARAM.fullmatch(s))
            return (-len(route.segments), params)

        self.routes = tuple(sorted(routes, key=specificity))
        self._compiled = tuple(_Compiled(r) for r in self.routes)

    def match(self, raw_path: bytes) -> ServiceRouteMatch | None:
        """The route ``raw_path`` falls under, with the path to send upstream, or None."""
        for compiled in self._compiled:
            length = compiled.prefix_length(raw_path)
            if length >= 0:
                route = compiled.route
                if route.strip_prefix:
                    return ServiceRouteMatch(route, raw_path[length:] or b"/")
                return ServiceRouteMatch(route, raw_path)
        return None


def _has_dot_segment(path: str) -> bool:
    if "/." not in path:
        return False
    return any(segment in (".", "..") for segment in path.split("/"))


class ServiceRouter:
    """An ASGI app sending each request to the service its path routes to.

    Args:
        routes: the route table (or routes to make one of).
        services: the ASGI app of each service named by a route (usually a
            `ReverseProxy`).
        fallback: the app for paths no route matches (default: a 404 problem).

    Raises:
        ConfigurationError: a route names a service missing from ``services``.
    """

    def __init__(
        self,
        routes: ServiceRoutes | Iterable[ServiceRoute],
        services: Mapping[str, ASGIApp],
        *,
        fallback: ASGIApp | None = None,
    ) -> None:
        self.table = routes if isinstance(routes, ServiceRoutes) else ServiceRoutes(routes)
        missing = sorted({r.service for r in self.table.routes} - set(services))
        if missing:
            raise ConfigurationError(f"routes name services without an app: {missing}")
        self.services = dict(services)
        self._apps = {r: self.services[r.service] for r in self.table.routes}
        self.fallback = fallback

    @classmethod
    def to_upstreams(
        cls,
        upstreams: Mapping[str, str | Iterable[str | Upstream] | UpstreamPicker],
        *,
        routes: ServiceRoutes | Iterable[ServiceRoute] = SEED_ROUTES,
        fallback: ASGIApp | None = None,
        **proxy_options: Any,
    ) -> ServiceRouter:
        """A router whose services are `ReverseProxy` apps to ``upstreams``.

        Args:
            upstreams: each service's instances (one URL, several, or a picker).
            routes: the route table (default: the seed's).
            fallback: the app for unrouted paths (default: a 404 problem).
            proxy_options: `ReverseProxy` keyword arguments, the same for every service.
        """
        services: dict[str, ASGIApp] = {
            name: ReverseProxy(instances, **proxy_options) for name, instances in upstreams.items()
        }
        return cls(routes, services, fallback=fallback)

    async def aclose(self) -> None:
        """Close every service app that can be closed (a proxy's pooled connections)."""
        for app in self.services.values():
            close = getattr(app, "aclose", None)
            if close is not None:
                await close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        path: str = scope["path"]
        raw_path = scope.get("raw_path") or quote(path, safe=_PATH_SAFE).encode()
        if _has_dot_segment(path):
            await send_problem(scope, send, 400, "dot segments are not allowed")
            return
        found = self.table.match(raw_path)
        if found is None:
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            else:
                await send_problem(scope, send, 404, "no service serves this path")
            return
        scope[ROUTE_SCOPE_KEY] = found.route
        scope[UPSTREAM_PATH_SCOPE_KEY] = found.upstream_path
        await self._apps[found.route](scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(receive, send, self.aclose)
