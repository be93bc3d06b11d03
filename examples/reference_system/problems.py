"""RFC 9457 problem details: the one error body shape of the reference system.

Every error the system answers itself (unknown product, bad id, bad API key, no such route)
is ``application/problem+json`` with ``type``, ``title``, ``status`` and ``detail``, the same
shape the rate limiter uses for its 429s, so a client parses every failure one way.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

__all__ = ["PROBLEM_JSON", "http_exception_handler", "problem", "send_problem"]

PROBLEM_JSON = "application/problem+json"


def _body(status: int, detail: str, extra: dict[str, object] | None) -> bytes:
    document: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if extra:
        document.update(extra)
    return json.dumps(document, separators=(",", ":")).encode()


def problem(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> Response:
    """A problem+json `Response` for ``status`` explaining ``detail``.

    Args:
        status: the HTTP status code (its reason phrase becomes ``title``).
        detail: a sentence telling the client what was wrong with this request.
        headers: extra response headers (e.g. ``Allow`` on a 405).
        extra: extension members added to the document.
    """
    return Response(
        _body(status, detail, extra), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


async def send_problem(
    send: Send, status: int, detail: str, *, headers: dict[str, str] | None = None
) -> None:
    """Answer a raw ASGI request with a problem document (for pure-ASGI layers)."""
    body = _body(status, detail, None)
    raw_headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Render Starlette's own 404/405 (no route, wrong method) as problem+json."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no resource at {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem(exc.status_code, detail, headers=dict(exc.headers or {}))
