"""The endpoints inside Starlette and FastAPI, as a bare ASGI app, and under a real uvicorn.

The last test is the point of draining: SIGTERM to a real server makes /ready fail while
the server still accepts connections, and the server stops only after ``drain_delay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.health import HealthApp, HealthRegistry
from tests.health.support import Dependency, Scripted, check_response

ROOT = Path(__file__).resolve().parents[2]


async def _get(http: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await http.get(path)
    check_response(response)
    return response


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s ASGI lifespan around a client, as a server would."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "state": {}}, incoming.get, sent.put))
    await incoming.put({"type": "lifespan.startup"})
    assert (await sent.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http
    await incoming.put({"type": "lifespan.shutdown"})
    assert (await sent.get())["type"] == "lifespan.shutdown.complete"
    await task


def _home(request: Any) -> PlainTextResponse:
    return PlainTextResponse("home")


async def test_starlette_routes_with_the_registry_lifespan() -> None:
    check = Dependency("redis")
    registry = HealthRegistry([Scripted("eventloop", liveness=True), check])
    health = HealthApp(registry)
    app = Starlette(
        routes=[
            Route("/", _home),
            *health.routes(),
            *health.routes(prefix="/prefixed"),
            Mount("/router", app=Router(routes=health.routes())),
            Mount("/mounted", app=HealthApp(registry, lifespan=False)),
        ],
        lifespan=registry.lifespan,
    )
    async with served(app) as http:
        assert registry.running
        assert check.calls == 1
        assert (await http.get("/")).text == "home"
        for base in ("", "/prefixed", "/router", "/mounted"):
            live = await _get(http, f"{base}/live")
            assert list(live.json()["checks"]) == ["eventloop:status"]
            assert (await _get(http, f"{base}/ready/redis")).status_code == 200
            assert (await _get(http, f"{base}/ready/nope")).status_code == 404
            verbose = await _get(http, f"{base}/health?verbose")
            assert verbose.text.endswith("health check passed\n")
        assert (await http.post("/ready")).status_code == 405
    assert registry.draining
    assert not registry.running
    assert check.closed == 1


async def test_fastapi_app() -> None:
    registry = HealthRegistry([Dependency("db")])
    app = FastAPI(lifespan=registry.lifespan)
    app.router.routes.extend(HealthApp(registry).routes(prefix="/ops"))

    @app.get("/items")
    def items() -> list[int]:
        return [1]

    async with served(app) as http:
        assert (await http.get("/items")).json() == [1]
        assert (await _get(http, "/ops/ready")).json()["status"] == "pass"
        assert (await _get(http, "/ops/health/db")).status_code == 200
    assert registry.draining


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"live_path": "live"}, "live_path"),
        ({"ready_path": "/ready/"}, "ready_path"),
        ({"health_path": "/live"}, "must differ"),
    ],
)
def test_bad_paths(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HealthApp(HealthRegistry(), **options)
    with pytest.raises(ConfigurationError, match="prefix"):
        HealthApp(HealthRegistry()).routes(prefix="ops/")


async def test_custom_paths() -> None:
    registry = HealthRegistry([Scripted("c")])
    await registry.refresh()
    app = HealthApp(registry, live_path="/livez", ready_path="/readyz", health_path="/healthz")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for path, status in (("/readyz/c", 200), ("/healthz", 200), ("/ready", 404)):
            response = await http.get(path)
            check_response(response)
            assert response.status_code == status


async def _lifespan(app: HealthApp, *events: str) -> list[dict[str, Any]]:
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for event in events:
        incoming.put_nowait({"type": f"lifespan.{event}"})
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, incoming.get, send)
    return sent


async def test_bare_asgi_lifespan_starts_drains_and_stops() -> None:
    check = Scripted("c")
    registry = HealthRegistry([check])
    sent = await _lifespan(HealthApp(registry), "startup", "shutdown")
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert (check.calls, check.closed, registry.draining) == (1, 1, True)

    untouched = HealthRegistry([Scripted("c")])
    await _lifespan(HealthApp(untouched, lifespan=False), "startup", "shutdown")
    assert not untouched.draining


async def test_bare_asgi_lifespan_reports_a_failed_start() -> None:
    registry = HealthRegistry()

    async def broken() -> None:
        raise RuntimeError("cannot start")

    registry.start = broken  # type: ignore[method-assign]
    sent = await _lifespan(HealthApp(registry), "startup")
    assert sent == [{"type": "lifespan.startup.failed", "message": "RuntimeError('cannot start')"}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_sigterm_drains_a_real_server_before_it_stops_accepting() -> None:
    port = _free_port()
    delay = 0.6
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.health.drain_server", str(port), str(delay)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server died"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        deadline = signalled + delay / 2
        while True:  # the signal is handled between two bytecodes: soon, not at once
            response = httpx.get(f"{base}/ready?verbose")
            if response.status_code == 503:
                break
            assert time.monotonic() < deadline, "/ready did not fail after SIGTERM"
        check_response(response)
        assert "[-]draining failed: the service is shutting down" in response.text
        assert time.monotonic() - signalled < delay  # answered while draining, not after
        assert process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        assert time.monotonic() - signalled >= delay
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
