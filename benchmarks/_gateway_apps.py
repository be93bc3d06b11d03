"""The request contenders of the gateway benchmark: one Starlette app, several edges on it.

Every stack is the same Starlette app as the observability benchmark's (one route,
``GET /api/v1/products/{id}`` answering a small JSON body) with its edge layers added
through ``middleware=[...]``. Requests are driven in-process: each request's scope is a
copy of a prebuilt one carrying ``Authorization: Bearer <token>`` (the token is the
runner's key, so a repeat token and a fresh token per request are the same loop), a
``receive`` with one body message and a ``send`` that only remembers the status.

Every stack gets the header, also those that ignore it, so all copy the same scope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware

from benchmarks._gateway_floor import Floor
from benchmarks._gateway_ours import chain_key, chain_middleware, gateway_wrap
from benchmarks._observability_apps import SCOPE as BASE_SCOPE
from benchmarks._observability_apps import NoopBase, starlette_app
from sysdesign_kit.observability import ObservabilityMiddleware
from sysdesign_kit.observability.prometheus import PrometheusSink
from sysdesign_kit.ratelimit.middleware import RateLimitMiddleware
from sysdesign_kit.ratelimit.tiers import tiered_limits

__all__ = ["FLOOR", "Requests", "Stack", "partial_chain", "stacks"]

Message = dict[str, Any]
ASGIApp = Callable[..., Any]
#: Nothing is denied: every limit is far above what a run sends.
RATE = "100000000/hour"
#: The chain's work in one hand-inlined function: a reference point, not a contender.
FLOOR = "floor: the chain's work hand-inlined, no features"

_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> Message:
    return _REQUEST


class Requests:
    """Prebuilt scopes per token, and the statuses the app answered (for sanity checks)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        headers = BASE_SCOPE["headers"]
        self._scopes = {
            token: {
                **BASE_SCOPE,
                "headers": [*headers, (b"authorization", f"Bearer {token}".encode())],
            }
            for token in tokens
        }
        self.statuses: dict[int, int] = {}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def drive(self, app: ASGIApp) -> Callable[[str], Any]:
        """One in-process request to ``app`` per call, carrying the token it is given."""
        scopes, send = self._scopes, self._send

        def request(token: str) -> Any:
            return app(dict(scopes[token]), _receive, send)

        return request


@dataclass
class Stack:
    """One contender: its app, and what it is (for the notes)."""

    app: ASGIApp
    notes: list[str] = field(default_factory=list)


def _slowapi(asgi: bool) -> Starlette:
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from slowapi.middleware import SlowAPIASGIMiddleware, SlowAPIMiddleware
    from slowapi.util import get_remote_address

    limiter = Limiter(key_func=get_remote_address, default_limits=[RATE])
    layer = SlowAPIASGIMiddleware if asgi else SlowAPIMiddleware
    app = starlette_app(Middleware(layer))
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    return app


def _observability() -> dict[str, Any]:
    """Our observability layer's options: request ids and metrics, no access log."""
    return {
        "listeners": [PrometheusSink(registry=CollectorRegistry())],
        "request_id": True,
        "access_log": False,
    }


def _limits() -> Any:
    """Memory rate limits per tier and per IP, none ever reached."""
    return tiered_limits(anonymous=RATE, free=RATE, premium=RATE, per_ip=RATE)


def _observability_and_limits() -> list[Middleware]:
    """Our correlation id + metrics and memory rate limit (per tier and per IP)."""
    return [
        Middleware(ObservabilityMiddleware, **_observability()),
        Middleware(RateLimitMiddleware, limits=_limits()),
    ]


def partial_chain() -> Starlette:
    """What of the chain exists without the gateway's pieces: observability + rate limit."""
    return starlette_app(*_observability_and_limits())


def stacks() -> dict[str, Stack]:
    """Every request contender by name, freshly built; ours only where its pieces exist."""
    found = {
        "bare Starlette": Stack(starlette_app()),
        "BaseHTTPMiddleware no-op": Stack(starlette_app(Middleware(NoopBase))),
        "slowapi (SlowAPIASGIMiddleware)": Stack(_slowapi(asgi=True)),
        "slowapi (SlowAPIMiddleware)": Stack(_slowapi(asgi=False)),
        "ours: observability + rate limit": Stack(partial_chain()),
    }
    edge = _observability_and_limits()
    found["ours layer: observability"] = Stack(starlette_app(edge[0]))
    found["ours layer: rate limit"] = Stack(starlette_app(edge[1]))
    gateway = chain_middleware()
    if gateway is not None:
        found["ours layer: JWT authentication"] = Stack(starlette_app(gateway[0]))
        found["ours layer: RBAC"] = Stack(starlette_app(*gateway[1:]))
        # The seed's order: correlation id and observability outermost, then who is
        # calling, then the limits by tier, then what they may do.
        found["ours: full chain"] = Stack(starlette_app(edge[0], gateway[0], edge[1], *gateway[1:]))
        # What the gateway's own layers cost with a bare request id instead of the
        # observability layer (no metrics, no Server-Timing).
        from sysdesign_kit.gateway.correlation import CorrelationIdMiddleware

        found["ours: chain, correlation id instead of observability"] = Stack(
            starlette_app(Middleware(CorrelationIdMiddleware), gateway[0], edge[1], *gateway[1:])
        )
    wrap = gateway_wrap(_observability(), _limits())
    if wrap is not None:
        # Built by `Gateway`, which wraps the whole Starlette app (outside its error and
        # exception middleware) instead of sitting in its middleware list.
        found["ours: full chain built by Gateway(...).wrap"] = Stack(wrap(starlette_app()))
    # Not a contender: the chain's work hand-inlined, the least Python can do (see the module).
    found[FLOOR] = Stack(Floor(starlette_app(), chain_key().public))
    return found
