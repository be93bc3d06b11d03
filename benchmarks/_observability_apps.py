"""The contenders of the observability benchmark: one Starlette app, several layers on it.

Every stack is the same Starlette app (one route, ``GET /api/v1/products/{id}`` answering a
small JSON body) with one layer added through ``middleware=[...]``, so each layer sits
inside Starlette's own ``ServerErrorMiddleware``, where ``add_middleware`` puts the peers.
Requests are driven in-process: a prebuilt scope (copied per request, because routing
and our layer write into it), a ``receive`` that returns one ``http.request`` message and
a ``send`` that does nothing.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sysdesign_kit.observability import JsonFormatter, ObservabilityMiddleware
from sysdesign_kit.observability.prometheus import PrometheusSink
from sysdesign_kit.observability.tracing import RequestTracer

__all__ = ["SCOPE", "Stack", "access_logger", "drive", "stacks"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Any]

PATH = "/api/v1/products/42"
SCOPE: dict[str, Any] = {
    "type": "http",
    # spec_version 2.4: no layer needs to listen for http.disconnect while streaming
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": PATH,
    "raw_path": PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"host", b"shop.example"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"application/json"),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "state": {},
}
_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> Message:
    return _REQUEST


async def _send(message: Message) -> None:
    return None


def drive(app: ASGIApp) -> Callable[[str], Any]:
    """One in-process request to ``app`` per call (the argument is ignored)."""

    def request(_key: str) -> Any:
        return app(dict(SCOPE), _receive, _send)

    return request


async def product(request: Request) -> Response:
    """The one endpoint: a small JSON document."""
    return JSONResponse({"id": int(request.path_params["id"]), "name": "widget", "price": 9.99})


class NoopASGI:
    """A pure-ASGI layer that only passes the call on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class NoopBase(BaseHTTPMiddleware):
    """A ``BaseHTTPMiddleware`` that only calls the next layer."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


def starlette_app(*middleware: Middleware) -> Starlette:
    """The benchmark app with ``middleware`` added (outermost first)."""
    return Starlette(routes=[Route("/api/v1/products/{id}", product)], middleware=middleware)


@dataclass
class Stack:
    """One contender: its app, a check that it observed a request, and cleanup."""

    app: ASGIApp
    observed: Callable[[], bool] = lambda: True
    settle: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)


def _samples(registry: CollectorRegistry, suffix: str) -> float:
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.endswith(suffix)
    )


def access_logger(stream: io.StringIO) -> logging.Logger:
    """A logger writing JSON lines to ``stream`` only (what ``json_handler`` sets up)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"sysdesign_kit.bench.access.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _ours_full(tracer_provider: Any = None) -> Stack:
    registry = CollectorRegistry()
    stream = io.StringIO()
    logger = access_logger(stream)
    # Without a provider: the API's no-op one, which is what a service gets with only
    # opentelemetry-api installed (the layer's own cost). With the SDK's provider and no
    # span processor, spans are sampled and recorded, then dropped at end(): what is
    # measured is making them, not exporting them.
    tracer = RequestTracer(tracer_provider=tracer_provider or NoOpTracerProvider())
    app = starlette_app(
        Middleware(
            ObservabilityMiddleware,
            listeners=[PrometheusSink(registry=registry)],
            request_id=True,
            server_timing=True,
            access_log=True,
            access_logger=logger,
            tracer=tracer,
        )
    )

    def observed() -> bool:
        line = stream.getvalue()
        return _samples(registry, "_duration_seconds_count") > 0 and '"request_id"' in line

    def settle() -> None:
        stream.seek(0)
        stream.truncate()

    return Stack(app, observed, settle)


def _ours_metrics() -> Stack:
    registry = CollectorRegistry()
    app = starlette_app(
        Middleware(
            ObservabilityMiddleware,
            listeners=[PrometheusSink(registry=registry)],
            request_id=False,
            access_log=False,
        )
    )
    return Stack(app, lambda: _samples(registry, "_duration_seconds_count") > 0)


def _starlette_exporter() -> Stack:
    from prometheus_client import REGISTRY
    from starlette_exporter import PrometheusMiddleware

    # starlette-exporter has no registry argument: it registers on the global REGISTRY,
    # which nothing else in this process uses.
    app = starlette_app(Middleware(PrometheusMiddleware))
    return Stack(app, lambda: _samples(REGISTRY, "starlette_requests_total") > 0)


def _instrumentator() -> Stack:
    from prometheus_fastapi_instrumentator import Instrumentator

    registry = CollectorRegistry()
    app = starlette_app()
    Instrumentator(registry=registry).instrument(app)
    return Stack(app, lambda: _samples(registry, "http_requests_total") > 0)


def stacks() -> dict[str, Stack]:
    """Every contender by name, freshly built."""
    return {
        "bare Starlette": Stack(starlette_app()),
        "pure-ASGI no-op": Stack(starlette_app(Middleware(NoopASGI))),
        "BaseHTTPMiddleware no-op": Stack(starlette_app(Middleware(NoopBase))),
        "ours full": _ours_full(),
        "ours full + OTel SDK": _ours_full(TracerProvider()),
        "ours metrics only": _ours_metrics(),
        "starlette-exporter": _starlette_exporter(),
        "prometheus-fastapi-instrumentator": _instrumentator(),
    }


async def check(app: ASGIApp) -> int:
    """Run one request through ``app``; its status (200 expected) for a sanity check."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(SCOPE), _receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    return int(starts[0]["status"]) if starts else 0
