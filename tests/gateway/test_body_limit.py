"""BodyLimitMiddleware: declared lengths refused up front, streamed bodies counted as read,
per-route limits, and a real chunked upload through uvicorn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import Message, Receive, Scope, Send
from sysdesign_kit.gateway.body_limit import BodyLimitMiddleware, RequestBodyTooLarge


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def swallow(request: Request) -> JSONResponse:
    try:
        await request.body()
    except RequestBodyTooLarge:
        return JSONResponse({"swallowed": True})
    return JSONResponse({"swallowed": False})


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/echo", echo_size, methods=["POST"]),
            Route("/upload/{name}", echo_size, methods=["PUT"]),
            Route("/raw", echo_size, methods=["POST"]),
            Route("/swallow", swallow, methods=["POST"]),
        ]
    )


LIMITS: dict[str, int | None] = {"PUT /upload/{name}": 1000, "POST /raw": None}


def outside() -> Any:
    """The limit wrapped around the app from outside (as a gateway stack does)."""
    return BodyLimitMiddleware(starlette_app(), max_bytes=100, routes=LIMITS)


def inside() -> Any:
    """The limit added with ``add_middleware`` (inside Starlette's error middleware)."""
    app = starlette_app()
    app.add_middleware(BodyLimitMiddleware, max_bytes=100, routes=LIMITS)
    return app


async def chunks(sizes: list[int]) -> AsyncIterator[bytes]:
    for size in sizes:
        yield b"x" * size


@pytest.mark.parametrize("make", [outside, inside])
@pytest.mark.parametrize(
    ("method", "path", "sizes", "status"),
    [
        ("POST", "/echo", [100], 200),
        ("POST", "/echo", [101], 413),
        ("POST", "/echo", [], 200),
        ("POST", "/echo", [50, 50], 200),
        ("POST", "/echo", [50, 50, 1], 413),
        ("POST", "/echo", [60] * 100, 413),
        ("PUT", "/upload/a", [500, 500], 200),
        ("PUT", "/upload/a", [500, 501], 413),
        ("POST", "/raw", [100_000], 200),
        ("POST", "/swallow", [60, 60], 413),
        ("POST", "/swallow", [60], 200),
    ],
)
@pytest.mark.parametrize("declared", [True, False])
async def test_limits(
    make: Any, method: str, path: str, sizes: list[int], status: int, declared: bool
) -> None:
    content: Any = b"x" * sum(sizes) if declared else chunks(sizes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make()), base_url="http://t"
    ) as http:
        response = await http.request(method, path, content=content)
    assert response.status_code == status
    if status == 413:
        problem = response.json()
        assert problem["status"] == 413
        assert problem["max_bytes"] in (100, 1000)
        assert response.headers["content-type"] == "application/problem+json"
    elif path != "/swallow":
        assert response.json() == {"size": sum(sizes)}


CHUNKED = [(b"transfer-encoding", b"chunked")]


async def call(
    app: Any,
    headers: list[tuple[bytes, bytes]],
    bodies: list[bytes],
    http_version: str = "1.1",
) -> tuple[list[Message], int]:
    sent: list[Message] = []
    pending = list(bodies)

    async def receive() -> Message:
        if not pending:
            return {"type": "http.disconnect"}
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": http_version,
        "method": "POST",
        "path": "/",
        "headers": headers,
    }
    await BodyLimitMiddleware(app, max_bytes=10)(scope, receive, send)
    return sent, len(pending)


async def reader(scope: Scope, receive: Receive, send: Send) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read"})


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ([(b"content-length", b"11")], 413, "larger than the 10 bytes"),
        ([(b"content-length", b"99999999999999999999")], 400, "malformed"),
        ([(b"content-length", b"-1")], 400, "malformed"),
        ([(b"content-length", b"1e3")], 400, "malformed"),
        ([(b"content-length", b"")], 400, "malformed"),
        ([(b"content-length", b"5"), (b"content-length", b"6")], 400, "conflicting"),
    ],
)
async def test_declared_lengths_are_judged_before_the_app_runs(
    headers: list[tuple[bytes, bytes]], status: int, detail: str
) -> None:
    sent, unread = await call(reader, headers, [b"x" * 11])
    assert sent[0]["status"] == status
    assert detail in json.loads(sent[1]["body"])["detail"]
    assert unread == 1  # the app never ran


async def test_equal_repeated_lengths_within_the_limit_pass() -> None:
    headers = [(b"content-length", b"5"), (b"content-length", b" 5")]
    sent, _ = await call(reader, headers, [b"x" * 5])
    assert sent[0]["status"] == 200


async def test_a_response_started_before_the_body_overflows_is_aborted() -> None:
    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await receive()

    with pytest.raises(RequestBodyTooLarge):
        await call(streaming, CHUNKED, [b"x" * 6, b"x" * 6])


async def test_an_app_answering_after_the_overflow_is_overridden() -> None:
    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while True:
                await receive()
        except RequestBodyTooLarge:
            pass
        for _ in range(2):  # reading again still fails
            with pytest.raises(RequestBodyTooLarge):
                await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ignored"})

    sent, _ = await call(stubborn, CHUNKED, [b"x" * 6, b"x" * 6, b"x"])
    assert [m.get("status") for m in sent] == [413, None]


async def test_other_errors_pass_through() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call(broken, CHUNKED, [b"x"])


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        return {}

    async def ignore(message: Message) -> None:
        pass

    await BodyLimitMiddleware(app)({"type": "websocket"}, nothing, ignore)
    assert seen == ["websocket"]


def test_limit_for() -> None:
    middleware = BodyLimitMiddleware(reader, max_bytes=None, routes=LIMITS)
    assert middleware.limit_for("PUT", "/upload/x") == 1000
    assert middleware.limit_for("PUT", "/upload/x/") == 1000
    assert middleware.limit_for("POST", "/raw") is None
    assert middleware.limit_for("POST", "/other") is None
    assert middleware.limit_for("POST", "/a/../b") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_bytes": -1},
        {"max_bytes": 1.5},
        {"max_bytes": True},
        {"routes": {"POST /x": -5}},
        {"routes": {"POST x": 5}},
    ],
)
def test_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        BodyLimitMiddleware(reader, **kwargs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=8), max_size=6))
async def test_any_chunking_is_judged_by_its_total(sizes: list[int]) -> None:
    bodies = [b"x" * size for size in sizes] or [b""]
    sent, _ = await call(reader, CHUNKED, bodies)
    assert sent[0]["status"] == (413 if sum(sizes) > 10 else 200)
    sent, _ = await call(reader, [], bodies, http_version="2")
    assert sent[0]["status"] == (413 if sum(sizes) > 10 else 200)


@pytest.mark.parametrize(("http_version", "status"), [("1.1", 200), ("1.0", 200), ("2", 413)])
async def test_without_length_or_chunking_only_http2_bodies_are_counted(
    http_version: str, status: int
) -> None:
    sent, _ = await call(reader, [], [b"x" * 11], http_version=http_version)
    assert sent[0]["status"] == status


@pytest.mark.slow
async def test_a_real_chunked_upload_through_uvicorn() -> None:
    """Over a socket, chunked: the 413 comes back and the server stays healthy."""
    config = uvicorn.Config(outside(), host="127.0.0.1", port=0, log_level="critical")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            big = await http.post("/echo", content=chunks([40] * 50))
            assert big.status_code == 413
            assert big.json()["max_bytes"] == 100
            huge = await http.post("/echo", content=chunks([65536] * 32))  # 2 MiB
            assert huge.status_code == 413
            small = await http.post("/echo", content=chunks([40, 40]))
            assert small.status_code == 200
            assert small.json() == {"size": 80}
            declared = await http.post("/echo", content=b"x" * 5000)
            assert declared.status_code == 413
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
