"""What the request-shaping layers share: ASGI type names and one problem+json answer.

Every refusal of these layers is an RFC 9457 problem document, the same shape the rate
limiter's 429 has (``type``, ``title``, ``status``, ``detail`` and extension members),
marked ``no-store`` so that no cache keeps an answer meant for one request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

import msgspec

__all__ = [
    "WS_POLICY_VIOLATION",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "problem_body",
    "run_lifespan",
    "send_problem",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_encode = msgspec.json.Encoder().encode

#: RFC 6455 close code "policy violation": a websocket refused before it was accepted.
WS_POLICY_VIOLATION = 1008

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
}


def _title(status: int) -> str:
    title = _TITLES.get(status)
    if title is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    return title


def problem_body(status: int, detail: str, extra: Mapping[str, object] | None = None) -> bytes:
    """An RFC 9457 problem document for ``status``, encoded."""
    problem: dict[str, object] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail,
    }
    if extra:
        problem.update(extra)
    return _encode(problem)


async def send_problem(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    extra: Mapping[str, object] | None = None,
    body: bytes | None = None,
) -> None:
    """Answer the request with a problem document (an HTTP request), or refuse a websocket.

    A websocket handshake is refused with the HTTP answer when the server supports the
    ``websocket.http.response`` extension, else closed with 1008 before being accepted
    (servers answer that with a 403).
    """
    if body is None:
        body = problem_body(status, detail, extra)
    all_headers = [
        (b"content-type", b"application/problem+json"),
        (b"cache-control", b"no-store"),
        (b"content-length", b"%d" % len(body)),
        *headers,
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body}
        )
    elif "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {"type": "websocket.http.response.start", "status": status, "headers": all_headers}
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send(
            {"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": _title(status)}
        )


async def run_lifespan(
    receive: Receive, send: Send, shutdown: Callable[[], Awaitable[None]]
) -> None:
    """Answer the ASGI lifespan protocol: ready at once; ``shutdown`` runs before the
    shutdown is acknowledged (a proxy closing its pools)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
