"""`metrics_app`: the ``/metrics`` endpoint as a pure ASGI app.

Serves a prometheus-client registry in the Prometheus text format (version 0.0.4), or in
OpenMetrics when the ``Accept`` header asks for it, gzipped when the client accepts gzip.
Use it bare (``uvicorn module:app``), as a route (``Route("/metrics", metrics_app())``) or
mounted (``app.mount("/metrics", metrics_app())``): it answers ``/metrics`` and the root
of wherever it is mounted. ``GET`` and ``HEAD`` only; anything else is a 405.

With ``PROMETHEUS_MULTIPROC_DIR`` set and no registry given, every scrape aggregates the
values all worker processes wrote to that directory (``MultiProcessCollector``).
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.multiprocess import MultiProcessCollector

from sysdesign_kit.errors import ConfigurationError

__all__ = ["MetricsApp", "metrics_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_log = logging.getLogger("sysdesign_kit.observability")
_SERVED = frozenset(("", "/", "/metrics"))
_ALLOW = (b"allow", b"GET, HEAD")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
# Caches between Prometheus and the app must keep the formats and encodings apart.
_VARY = (b"vary", b"Accept, Accept-Encoding")


class MetricsApp:
    """Pure ASGI app answering ``GET``/``HEAD /metrics`` from a registry.

    Args:
        registry: the registry (or any collector) to expose.
    """

    __slots__ = ("registry",)

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1003})
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            body = f"method {method} not allowed on the metrics endpoint; use GET or HEAD\n"
            await _respond(send, 405, body.encode(), [_TEXT, _ALLOW])
            return
        if _route_path(scope) not in _SERVED:
            await _respond(send, 404, b"not found; metrics are served at /metrics\n", [_TEXT])
            return
        accept = encoding = ""
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"accept-encoding":
                encoding = value.decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        try:
            output = encoder(self.registry)
        except Exception:
            # A collector failing (a corrupt multiprocess file...) is our fault, not the
            # scraper's; say so plainly instead of dropping the connection.
            _log.exception("collecting metrics failed")
            await _respond(send, 500, b"collecting metrics failed\n", [_TEXT])
            return
        headers = [(b"content-type", content_type.encode("latin-1")), _VARY]
        if gzip_accepted(encoding):
            output = gzip.compress(output, compresslevel=6)
            headers.append((b"content-encoding", b"gzip"))
        await _respond(send, 200, output, headers, head=method == "HEAD")


def metrics_app(registry: CollectorRegistry | None = None) -> MetricsApp:
    """The ``/metrics`` endpoint for ``registry``, as a pure ASGI app.

    Args:
        registry: what to expose. Default: with ``PROMETHEUS_MULTIPROC_DIR`` set, a fresh
            registry aggregating every worker's files; otherwise prometheus-client's global
            ``REGISTRY``.

    Raises:
        ConfigurationError: ``PROMETHEUS_MULTIPROC_DIR`` is set but is not a directory.
    """
    if registry is None:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:
            if not os.path.isdir(path):
                raise ConfigurationError(
                    f"PROMETHEUS_MULTIPROC_DIR={path!r} is not a directory; create it (empty) "
                    "before the workers start"
                )
            registry = CollectorRegistry()
            # prometheus-client leaves this constructor unannotated.
            MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
    return MetricsApp(registry)


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path and sets root_path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    head: bool = False,
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # Run bare under a server, the app has nothing to start or stop.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
