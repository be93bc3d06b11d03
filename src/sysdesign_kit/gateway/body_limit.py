"""``BodyLimitMiddleware``: refuse request bodies over a size limit (413) before the app
reads them, whether their size is declared or streamed.

- A declared ``Content-Length`` over the limit is answered at once, without calling the app.
  A malformed or contradictory one is a 400. The connection is left to the server (uvicorn
  discards the rest of the body and keeps it open): closing it while the client is still
  sending makes the kernel reset it, and most clients then lose the 413 itself.
- A body without a declared length (chunked, HTTP/2 streams) is counted as the app reads
  it. The read that crosses the limit raises `RequestBodyTooLarge` inside the app; when the
  app lets it out (or swallows it) before starting a response, the client gets the 413 and
  whatever the app tries to send afterwards is dropped. When the app had already started
  its response, the error is raised to the server, which aborts the connection: a response
  cut short must not look complete.

A declared length within the limit is trusted, so those bodies are not counted: HTTP
servers (uvicorn, hypercorn, daphne) refuse a body longer than its ``Content-Length``. An
HTTP/1 request with neither ``Content-Length`` nor ``Transfer-Encoding`` has no body and
passes untouched; HTTP/2 and 3 bodies without a declared length are counted.
Limits can differ per route (``"POST /upload": 50 * 2**20``; None for no limit).
"""

from __future__ import annotations

from collections.abc import Mapping

from sysdesign_kit.errors import ConfigurationError, RequestBodyTooLarge
from sysdesign_kit.gateway._respond import ASGIApp, Message, Receive, Scope, Send, send_problem
from sysdesign_kit.gateway._route_table import RouteTable, normalize_path, parse_route_key

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimitMiddleware", "RequestBodyTooLarge"]

#: The default limit: 1 MiB.
DEFAULT_MAX_BODY_BYTES = 1 << 20
_UNLIMITED = -1


def _limit(value: int | None, where: str) -> int:
    if value is None:
        return _UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{where} must be a byte count >= 0 or None, not {value!r}")
    return value


def _too_large(limit: int) -> str:
    return f"the request body is larger than the {limit} bytes accepted here"


class BodyLimitMiddleware:
    """Limit the size of HTTP request bodies.

    Args:
        app: the ASGI app.
        max_bytes: the limit for routes without their own (None: no limit).
        routes: per-route limits, ``{"POST /upload": 50 * 2**20, "PUT /raw/{id}": None}``
            (templates as in the route table: a static path wins, then the first declared).

    Raises:
        ConfigurationError: a limit that is not a byte count, or a route that does not parse.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        routes: Mapping[str, int | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = _limit(max_bytes, "max_bytes")
        entries = []
        for key, value in (routes or {}).items():
            methods, path = parse_route_key(key)
            entries.append((methods, path, _limit(value, f"the limit of {key!r}")))
        self._routes: RouteTable[int] | None = RouteTable(entries) if entries else None

    def limit_for(self, method: str, path: str) -> int | None:
        """The limit for ``method`` on ``path`` (None: unlimited)."""
        limit = self.max_bytes
        if self._routes is not None:
            normal = normalize_path(path)
            if normal is not None:
                found = self._routes.match(method, normal)
                if found is not None:
                    limit = found
        return None if limit == _UNLIMITED else limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if self._routes is not None:
            path = normalize_path(scope.get("path", "/"))
            if path is not None:
                found = self._routes.match(scope.get("method", "GET"), path)
                if found is not None:
                    limit = found
        if limit == _UNLIMITED:
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for key, value in scope.get("headers") or ():
            if key == b"content-length":
                if declared is not None and value.strip() != declared:
                    await send_problem(scope, send, 400, "conflicting Content-Length headers")
                    return
                declared = value.strip()
            elif key == b"transfer-encoding":
                chunked = True
        if declared is not None:
            if not declared.isdigit() or len(declared) > 18:
                await send_problem(scope, send, 400, "malformed Content-Length header")
                return
            if int(declared) > limit:
                await send_problem(scope, send, 413, _too_large(limit), extra={"max_bytes": limit})
                return
            await self.app(scope, receive, send)
            return
        if not chunked and scope.get("http_version", "1.1")[:1] == "1":
            # HTTP/1 framing: neither header, no body (RFC 9112 section 6.3).
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise RequestBodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise RequestBodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it never fully got; ours goes instead
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            started = True
            await send_problem(scope, send, 413, _too_large(limit), extra={"max_bytes": limit})
