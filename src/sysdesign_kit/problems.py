"""RFC 9457 problem answers, sent the same way by every pure-ASGI layer of the kit.

A refusal (the rate limiter's 429, the gateway's 400/401/403/413/...) is an
``application/problem+json`` document with ``type``, ``title``, ``status``, ``detail`` and
extension members, marked ``no-store`` so that no cache keeps an answer meant for one
request. A HEAD request gets the headers only; a websocket handshake gets the HTTP answer
when the server supports the ``websocket.http.response`` extension, else it is closed with
1008 before being accepted (servers answer that with a 403).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

import msgspec

__all__ = ["WS_POLICY_VIOLATION", "problem_body", "send_problem", "status_title"]

_encode = msgspec.json.Encoder().encode

#: RFC 6455 close code "policy violation": a websocket refused before it was accepted.
WS_POLICY_VIOLATION = 1008

# RFC 9110's names where Python's HTTPStatus still has the older ones.
_TITLES = {
    413: "Content Too Large",
    422: "Unprocessable Content",
}


def status_title(status: int) -> str:
    """The reason phrase of ``status`` (RFC 9110's), or ``"Error"`` for an unknown code."""
    title = _TITLES.get(status)
    if title is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    return title


def problem_body(
    status: int,
    detail: str,
    extra: Mapping[str, object] | None = None,
    *,
    type: str = "about:blank",
    title: str | None = None,
) -> bytes:
    """An RFC 9457 problem document for ``status``, encoded."""
    problem: dict[str, object] = {
        "type": type,
        "title": title or status_title(status),
        "status": status,
        "detail": detail,
    }
    if extra:
        problem.update(extra)
    return _encode(problem)


async def send_problem(
    scope: MutableMapping[str, Any],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    status: int,
    detail: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    extra: Mapping[str, object] | None = None,
    body: bytes | None = None,
    type: str = "about:blank",
    title: str | None = None,
) -> None:
    """Answer the request with a problem document (an HTTP request), or refuse a websocket.

    Args:
        scope, send: the request's.
        status, detail: the answer's status and what was wrong.
        headers: more response headers (``WWW-Authenticate``, ``Retry-After``...).
        extra: extension members of the document.
        body: a document encoded already (``extra``, ``type`` and ``title`` then unused).
        type, title: the document's ``type`` URI and ``title`` (default: the status's).
    """
    title = title or status_title(status)
    if body is None:
        body = problem_body(status, detail, extra, type=type, title=title)
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
        await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": title})
