"""`HealthApp`: ``/live``, ``/ready`` and ``/health`` as a pure ASGI app or Starlette routes.

- ``/live``: the process itself (event-loop lag, your liveness checks). A failure here
  means "restart me".
- ``/ready``: whether to send this process traffic: its dependencies, and the draining
  flag, which makes it fail at once when shutdown begins.
- ``/health``: everything, for people and dashboards; draining shows as ``warn``.
- ``/{endpoint}/{name}``: one check alone (404 for a name not shown at that endpoint).

Query parameters, as on the Kubernetes API server: ``?verbose`` answers with a plain-text
listing instead of JSON; ``?exclude=a&exclude=b`` (or ``exclude=a,b``) leaves checks out.
A name that matches no check is ignored, as Kubernetes does, and reported in the verbose
listing and the JSON ``notes``, so a probe keeps working while a check is renamed. More
than `MAX_EXCLUDES` names or a query longer than `MAX_QUERY_BYTES` is a 400.

Answers come from cached readings only: 200 for ``pass`` and ``warn``, 503 for ``fail``,
``Cache-Control: max-age`` until the next reading is due, HEAD supported.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_plus

import msgspec

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.health.access import DetailsPolicy
from sysdesign_kit.health.body import (
    HEALTH_JSON,
    Verdict,
    health_document,
    verbose_text,
)
from sysdesign_kit.health.reading import Status, worst
from sysdesign_kit.health.registry import Endpoint, HealthRegistry

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = ["MAX_EXCLUDES", "MAX_QUERY_BYTES", "HealthApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Most ``exclude`` names one request may give.
MAX_EXCLUDES: Final = 256
#: Longest query string read; a longer one is refused before it is parsed.
MAX_QUERY_BYTES: Final = 16_384
_SHOWN_UNKNOWN = 10
_DRAINING = "the service is shutting down"
_LABELS: Final[dict[str, str]] = {"live": "liveness", "ready": "readiness", "health": "health"}
_FALSE = frozenset({"0", "false", "no", "off"})
_encode = msgspec.json.Encoder().encode
_log = logging.getLogger("sysdesign_kit.health")


class _BadRequest(Exception):
    """A query the endpoint refuses, with the reason for the 400 problem."""


class HealthApp:
    """The health endpoints of one `HealthRegistry`, as an ASGI app.

    Mount it at the root of a bare ASGI server (``uvicorn module:health_app``), behind a
    router that forwards those paths, or add its `routes` to a Starlette/FastAPI app.

    Args:
        registry: the checks and their readings.
        live_path, ready_path, health_path: where the three endpoints answer.
        details: who sees outputs, values and ids: ``True`` (everyone), ``False`` (no one),
            or a `DetailsPolicy` such as ``require_token(...)`` or
            ``lambda scope: get_principal(scope) is not None``.
        lifespan: when the app receives ASGI lifespan events (it is the server's app),
            start the registry on startup and drain and stop it on shutdown.

    Raises:
        ConfigurationError: paths that are not distinct absolute paths.
    """

    def __init__(
        self,
        registry: HealthRegistry,
        *,
        live_path: str = "/live",
        ready_path: str = "/ready",
        health_path: str = "/health",
        details: bool | DetailsPolicy = True,
        lifespan: bool = True,
    ) -> None:
        paths: dict[Endpoint, str] = {
            "live": live_path,
            "ready": ready_path,
            "health": health_path,
        }
        for endpoint, path in paths.items():
            if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
                raise ConfigurationError(
                    f"{endpoint}_path must start with '/' and not end with one, got {path!r}"
                )
        if len(set(paths.values())) != len(paths):
            raise ConfigurationError(f"the health paths must differ, got {paths}")
        self.registry = registry
        self.paths = paths
        self.details = details
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (or the server's lifespan events)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        path = _route_path(scope)
        for endpoint, base in self.paths.items():
            if path in (base, base + "/"):
                await self.respond(scope, send, endpoint, None)
                return
            if path.startswith(base + "/") and "/" not in path[len(base) + 1 :]:
                await self.respond(scope, send, endpoint, path[len(base) + 1 :])
                return
        await _problem(scope, send, 404, "Not Found", "no health endpoint at this path")

    def routes(self, prefix: str = "") -> list[BaseRoute]:
        """Starlette routes for the endpoints, e.g. ``Starlette(routes=app.routes())``.

        Args:
            prefix: prepended to every path (``"/ops"`` gives ``/ops/ready``...).
        """
        from starlette.routing import Route

        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigurationError(f"prefix must start with '/' and not end with one: {prefix}")
        return [
            Route(
                prefix + path + suffix,
                _RouteEndpoint(self, endpoint),
                methods=["GET", "HEAD"],
                name=f"health_{endpoint}{'_check' if suffix else ''}",
            )
            for endpoint, path in self.paths.items()
            for suffix in ("", "/{name}")
        ]

    async def respond(self, scope: Scope, send: Send, endpoint: Endpoint, name: str | None) -> None:
        """Answer ``endpoint`` (or its check ``name``) for this request."""
        if scope.get("method") not in ("GET", "HEAD"):
            await _problem(
                scope,
                send,
                405,
                "Method Not Allowed",
                "health endpoints answer GET and HEAD",
                [(b"allow", b"GET, HEAD")],
            )
            return
        try:
            verbose, excludes = _parse_query(scope.get("query_string", b""))
        except _BadRequest as exc:
            await _problem(scope, send, 400, "Bad Request", str(exc))
            return
        registry = self.registry
        checks = registry.select(endpoint)
        extra: list[tuple[str, Status, str]] = []
        excluded: list[str] = []
        unknown: list[str] = []
        if name is not None:
            checks = [check for check in checks if check.name == name]
            if not checks:
                detail = f"no {_LABELS[endpoint]} check named {_shorten(name)!r}"
                await _problem(scope, send, 404, "Not Found", detail)
                return
        else:
            skip = set(excludes)
            excluded = [check.name for check in checks if check.name in skip]
            checks = [check for check in checks if check.name not in skip]
            known = registry.checks
            unknown = list(dict.fromkeys(_shorten(n) for n in excludes if n not in known))
            unknown = unknown[:_SHOWN_UNKNOWN]
            if registry.draining and endpoint != "live":
                extra.append(("draining", "fail" if endpoint == "ready" else "warn", _DRAINING))
        verdicts = [Verdict(c, *registry.verdict(c), registry.reading(c.name)) for c in checks]
        status = worst([*(v.status for v in verdicts), *(state for _, state, _ in extra)])
        details = self._details_for(scope)
        if verbose:
            text = verbose_text(
                verdicts,
                endpoint=endpoint,
                status=status,
                details=details,
                excluded=excluded,
                unknown=unknown,
                extra=extra,
            )
            body, content_type = text.encode(), b"text/plain; charset=utf-8"
        else:
            notes = [f"exclude: no check named {n!r}" for n in unknown]
            document = health_document(
                verdicts,
                status=status,
                info=registry.info,
                details=details,
                output=f"draining: {_DRAINING}" if extra else None,
                notes=notes,
            )
            body, content_type = _encode(document), HEALTH_JSON.encode()
        headers = [
            (b"content-type", content_type),
            (b"cache-control", b"max-age=%d" % registry.max_age(checks)),
        ]
        await _send(scope, send, 503 if status == "fail" else 200, headers, body)

    def _details_for(self, scope: Scope) -> bool:
        if isinstance(self.details, bool):
            return self.details
        try:
            return bool(self.details(scope))
        except Exception:
            _log.exception("health details policy raised; details withheld")
            return False

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.lifespan:
                    try:
                        await self.registry.start()
                    except Exception as exc:
                        _log.exception("health registry failed to start")
                        await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                        return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.lifespan:
                    self.registry.drain()
                    await self.registry.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _RouteEndpoint:
    """One endpoint as an ASGI app for a Starlette ``Route`` (a class, so it is not
    mistaken for a request handler function); ``{name}`` comes from the path params."""

    def __init__(self, app: HealthApp, endpoint: Endpoint) -> None:
        self.app = app
        self.endpoint: Endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = (scope.get("path_params") or {}).get("name")
        await self.app.respond(scope, send, self.endpoint, name)


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path and a root_path)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _parse_query(raw: bytes) -> tuple[bool, list[str]]:
    if len(raw) > MAX_QUERY_BYTES:
        raise _BadRequest(f"the query string is longer than {MAX_QUERY_BYTES} bytes")
    verbose = False
    excludes: list[str] = []
    for field in raw.split(b"&"):
        key, _, value = field.partition(b"=")
        key_text = unquote_plus(key.decode("latin-1"))
        if key_text == "verbose":
            verbose = unquote_plus(value.decode("latin-1")).strip().lower() not in _FALSE
        elif key_text == "exclude":
            for item in unquote_plus(value.decode("latin-1")).split(","):
                item = item.strip()
                if not item:
                    continue
                excludes.append(item)
                if len(excludes) > MAX_EXCLUDES:
                    raise _BadRequest(f"at most {MAX_EXCLUDES} exclude names are accepted")
    return verbose, excludes


def _shorten(name: str) -> str:
    return name if len(name) <= 64 else name[:63] + "…"


async def _problem(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = _encode({"type": "about:blank", "title": title, "status": status, "detail": detail})
    all_headers = [
        (b"content-type", b"application/problem+json"),
        (b"cache-control", b"no-store"),
        *(headers or ()),
    ]
    await _send(scope, send, status, all_headers, body)


async def _send(
    scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send(
        {"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body}
    )
