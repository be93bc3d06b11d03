"""`Gateway`: the gateway's layers around an app, in the seed's order, with one call.

::

    app = Gateway(
        authentication={"bearer": JWTAuthenticator(verifier)},
        rate_limit={"limits": tiered_limits()},
        authorization={"rules": [Rule("GET /api/v1/products/{id}", scopes="read")]},
    ).wrap(router)

Outermost first (a request meets them in this order)::

    observability or correlation id   request id (and, with observability, metrics, logs,
                                      traces, Server-Timing) before anything can answer
    authentication                    credentials -> Principal (401/400 here)
    rate limit                        per tier from that principal, per IP (429 here)
    authorization                     RBAC and scopes (403 here)
    body limit                        413 before the app reads a byte too many
    versioning                        /api/vN/, Accept-Version (404/406 here)
    validation                        msgspec schemas per route (415/400/422 here)
    principal headers                 X-User-* for upstreams, stripped from clients
    app                               usually the service router (reverse proxy)

Authentication comes before the rate limiter (the seed draws the limiter first) because
its tiers are the principal's. With both, its refusals are held back by default
(`deferred`): a request with a bad credential goes through the limiter as anonymous and is
answered 400/401 just below it (``answer_deferred``), so guessing tokens is throttled like
any anonymous traffic. Each argument is None (the layer is left out), True (its defaults)
or a mapping of keyword arguments for that layer's class; every layer is also usable alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from starlette.types import ASGIApp

from sysdesign_kit.errors import ConfigurationError

__all__ = ["LAYER_ORDER", "Gateway"]

#: The layers' names, outermost first.
LAYER_ORDER = (
    "observability",
    "correlation_id",
    "authentication",
    "rate_limit",
    "authorization",
    "body_limit",
    "versioning",
    "validation",
    "principal_headers",
)

Options = Mapping[str, Any] | bool | None

#: The layers that cannot run on defaults, and the option each needs.
_NEEDS = MappingProxyType(
    {"rate_limit": "limits", "versioning": "versions", "validation": "schemas"}
)


def _layer_class(name: str) -> Callable[..., ASGIApp]:
    # Imported on use: a gateway without observability never imports OpenTelemetry...
    if name == "observability":
        from sysdesign_kit.observability import ObservabilityMiddleware

        return ObservabilityMiddleware
    if name == "correlation_id":
        from sysdesign_kit.gateway.correlation import CorrelationIdMiddleware

        return CorrelationIdMiddleware
    if name == "authentication":
        from sysdesign_kit.gateway.authentication import AuthenticationMiddleware

        return AuthenticationMiddleware
    if name == "deferred_authentication":
        from sysdesign_kit.gateway.deferred import DeferredAuthentication

        return DeferredAuthentication
    if name == "answer_deferred":
        from sysdesign_kit.gateway.deferred import AnswerDeferred

        return AnswerDeferred
    if name == "rate_limit":
        from sysdesign_kit.ratelimit.middleware import RateLimitMiddleware

        return RateLimitMiddleware
    if name == "authorization":
        from sysdesign_kit.gateway.rbac import AuthorizationMiddleware

        return AuthorizationMiddleware
    if name == "body_limit":
        from sysdesign_kit.gateway.body_limit import BodyLimitMiddleware

        return BodyLimitMiddleware
    if name == "versioning":
        from sysdesign_kit.gateway.versioning import VersionMiddleware

        return VersionMiddleware
    if name == "validation":
        from sysdesign_kit.gateway.validation import ValidationMiddleware

        return ValidationMiddleware
    from sysdesign_kit.gateway.headers import PrincipalHeadersMiddleware

    return PrincipalHeadersMiddleware


class Gateway:
    """The plan of a gateway: which layers, with which settings, in the seed's order.

    Args:
        observability: `ObservabilityMiddleware` options (it sets request ids itself, so
            ``correlation_id`` is then left out unless given explicitly).
        correlation_id: `CorrelationIdMiddleware` options; on by default when there is no
            observability layer.
        authentication: `AuthenticationMiddleware` options (``bearer=``, ``api_key=``...).
        rate_limit: `RateLimitMiddleware` options (``limits=`` is required).
        authorization: `AuthorizationMiddleware` options (``rules=``...).
        body_limit: `BodyLimitMiddleware` options.
        versioning: `VersionMiddleware` options (``versions=`` is required).
        validation: `ValidationMiddleware` options (``schemas=`` is required).
        principal_headers: `PrincipalHeadersMiddleware` options.
        count_refusals: with both authentication and a rate limit, hold authentication's
            refusals back until the limiter has counted the request, and (with a per-IP
            limit in `tiered_limits`) verify no credential of a client past that limit
            (see `deferred`).
        fuse: serve the hot path of observability, authentication, a rate limit deciding
            in this process and authorization in one frame (see `edge`); the same answers,
            at a lower cost per request.

    Raises:
        ConfigurationError: an option that is not None, a bool or a mapping; a layer that
            needs settings given True; the layer's own errors when `wrap` builds it.
    """

    def __init__(
        self,
        *,
        observability: Options = None,
        correlation_id: Options = None,
        authentication: Options = None,
        rate_limit: Options = None,
        authorization: Options = None,
        body_limit: Options = None,
        versioning: Options = None,
        validation: Options = None,
        principal_headers: Options = None,
        count_refusals: bool = True,
        fuse: bool = True,
    ) -> None:
        self.fuse = fuse
        if correlation_id is None and not observability:
            correlation_id = True
        given = {
            "observability": observability,
            "correlation_id": correlation_id,
            "authentication": authentication,
            "rate_limit": rate_limit,
            "authorization": authorization,
            "body_limit": body_limit,
            "versioning": versioning,
            "validation": validation,
            "principal_headers": principal_headers,
        }
        self._plan: list[tuple[str, dict[str, Any]]] = []
        for name in LAYER_ORDER:
            options = given[name]
            if options is None or options is False:
                continue
            if options is True:
                needed = _NEEDS.get(name)
                if needed is not None:
                    raise ConfigurationError(f"{name} needs settings: give it {{{needed!r}: ...}}")
                options = {}
            if not isinstance(options, Mapping):
                raise ConfigurationError(
                    f"{name} must be None, a bool or a mapping of options, got {options!r}"
                )
            self._plan.append((name, dict(options)))
        if count_refusals and authentication and rate_limit:
            from sysdesign_kit.ratelimit.tiers import TieredLimits

            plan = self._plan
            names = [name for name, _ in plan]
            at, limiter_at = names.index("authentication"), names.index("rate_limit")
            options = plan[at][1]
            limits = plan[limiter_at][1].get("limits")
            if isinstance(limits, TieredLimits) and limits.per_ip is not None:
                # A client past its per-IP limit is refused whoever it is: its credentials
                # are not worth a signature check (see `deferred`).
                options.setdefault("refused_anyway", limits.over_ip_limit)
            plan[at] = ("deferred_authentication", options)
            plan.insert(limiter_at + 1, ("answer_deferred", {}))

    def __repr__(self) -> str:
        return f"Gateway({', '.join(self.layers)})"

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers this gateway puts in front of an app, outermost first."""
        return tuple(name for name, _ in self._plan)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` inside every planned layer; the outermost layer is returned.

        Raises:
            ConfigurationError: a layer refused its options.
        """
        built: dict[str, Any] = {}
        for name, options in reversed(self._plan):
            try:
                app = _layer_class(name)(app, **options)
            except TypeError as exc:  # an unknown or missing keyword
                raise ConfigurationError(f"{name}: {exc}") from exc
            built[name] = app
        return _fused(app, built, self.layers) if self.fuse else app


def _fused(stack: ASGIApp, built: Mapping[str, Any], layers: tuple[str, ...]) -> ASGIApp:
    """``stack`` behind a `FusedEdge` when its outer layers can be fused, else itself."""
    head = [name for name in layers if name != "answer_deferred"][:4]
    if head[:3] not in (
        ["observability", "authentication", "rate_limit"],
        ["observability", "deferred_authentication", "rate_limit"],
    ):
        return stack
    limiter = built["rate_limit"]
    if not limiter.local:
        return stack
    from sysdesign_kit.gateway.edge import FusedEdge

    auth = built.get("authentication") or built["deferred_authentication"].direct
    authz = built["authorization"] if head[3:] == ["authorization"] else None
    return FusedEdge(
        stack=stack,
        observability=built["observability"],
        authentication=auth,
        rate_limit=limiter,
        authorization=authz,
        app=built.get("answer_deferred", limiter).app,
    )
