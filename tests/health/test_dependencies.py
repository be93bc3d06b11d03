"""The dependency checks against real things: Redis servers, an HTTP server, SQLite.

Redis: the suite's server, and one of this test's own (the redis-server helper of
tests/integration/test_redis_fault.py) that is stopped, hung and started again. HTTP: a
``http.server`` thread on 127.0.0.1 answering 200, 302, 500 or never. Database: sqlite3
through the DB-API path, and async callables.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.health import DatabaseCheck, HealthApp, HealthRegistry, HttpCheck, Reading
from sysdesign_kit.health.redis_check import RedisCheck
from tests.health.support import client, settle
from tests.integration.test_redis_fault import RedisServer
from tests.integration.test_redis_fault import server as server  # the fixture


async def _ready(registry: HealthRegistry) -> dict[str, Any]:
    """Take fresh readings, then ask /ready (the response is schema-validated)."""
    await registry.refresh()
    async with client(HealthApp(registry)) as http:
        response = await http.get("/ready")
    document: dict[str, Any] = response.json()
    return document


def _entry(document: dict[str, Any], key: str) -> dict[str, Any]:
    entry: dict[str, Any] = document["checks"][key][0]
    return entry


# -- Redis -----------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_ping_on_the_suite_server(redis_url: str) -> None:
    check = RedisCheck(redis_url)
    registry = HealthRegistry([check])
    try:
        document = await _ready(registry)
        entry = _entry(document, "redis:responseTime")
        assert (document["status"], entry["status"]) == ("pass", "pass")
        assert entry["componentType"] == "datastore"
        assert entry["observedUnit"] == "ms"
        assert entry["observedValue"] >= 0
    finally:
        await registry.stop()
        await check.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_stops_hangs_and_comes_back(server: RedisServer) -> None:
    check = RedisCheck(server.url)
    registry = HealthRegistry([check])
    try:
        assert (await _ready(registry))["status"] == "pass"

        server.stop()
        down = await _ready(registry)
        output = _entry(down, "redis:responseTime")["output"]
        assert down["status"] == "fail"
        assert output.startswith(f"redis PING at {server.url} failed: ConnectionError")

        server.start()
        deadline = time.monotonic() + 5
        while (await registry.refresh())["redis"].status != "pass":
            assert time.monotonic() < deadline, "the check did not recover"
            await asyncio.sleep(0.05)

        server.signal(signal.SIGSTOP)  # hung: replies time out (0.25 s by default)
        try:
            hung = await registry.refresh()
            assert hung["redis"].status == "fail"
            assert "TimeoutError" in (hung["redis"].output or "")
        finally:
            server.signal(signal.SIGCONT)
    finally:
        await check.aclose()


@pytest.mark.redis
async def test_redis_check_on_a_client_of_yours(redis_url: str) -> None:
    own = redis.asyncio.Redis.from_url(redis_url)
    check = RedisCheck(client=own)
    try:
        assert (await check.probe()).status == "pass"
        await check.aclose()  # not ours to close
        assert await own.ping()
    finally:
        await own.aclose()


def test_redis_check_arguments() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        RedisCheck()
    with pytest.raises(ConfigurationError, match="scheme"):
        RedisCheck("http://localhost")
    check = RedisCheck("redis://user:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in check.location


async def test_redis_credentials_never_reach_the_output() -> None:
    check = RedisCheck("redis://user:hunter2@127.0.0.1:1/0?socket_connect_timeout=0.2")
    try:
        reading = (await HealthRegistry([check]).refresh())["redis"]
    finally:
        await check.aclose()
    assert reading.status == "fail"
    assert "hunter2" not in (reading.output or "")


# -- HTTP ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    release = threading.Event()
    seen_headers: list[dict[str, str]] = []  # noqa: RUF012 - shared by the server threads

    def do_GET(self) -> None:
        self.seen_headers.append(dict(self.headers))
        if self.path == "/slow":
            self.release.wait(10)
        status = {"/ok": 200, "/moved": 302, "/slow": 200}.get(self.path, 500)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere-that-fails")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    _Handler.release.clear()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Handler.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
async def checks() -> AsyncIterator[list[HttpCheck]]:
    made: list[HttpCheck] = []
    yield made
    for check in made:
        await check.aclose()


@pytest.mark.parametrize(
    ("path", "status", "output"),
    [
        ("/ok", "pass", None),
        ("/moved", "pass", None),  # 3xx passes; the redirect is not followed
        ("/error", "fail", "HTTP 500 Internal Server Error"),
    ],
)
async def test_http_dependency(
    http_server: str, checks: list[HttpCheck], path: str, status: str, output: str | None
) -> None:
    check = HttpCheck(http_server + path, name="upstream", headers={"x-api-key": "k"})
    checks.append(check)
    document = await _ready(HealthRegistry([check]))
    entry = _entry(document, "upstream:responseTime")
    assert (entry["status"], entry.get("output")) == (status, output)
    assert entry["observedUnit"] == "ms"
    assert _Handler.seen_headers[-1]["x-api-key"] == "k"


async def test_http_dependency_that_never_answers(
    http_server: str, checks: list[HttpCheck], clock: ManualClock
) -> None:
    check = HttpCheck(http_server + "/slow", name="slow", timeout=3)
    checks.append(check)
    registry = HealthRegistry([check], clock=clock)
    pending = asyncio.ensure_future(registry.refresh())
    await asyncio.sleep(0.05)  # the request reaches the server and waits there
    clock.advance(3)
    reading: Reading = (await pending)["slow"]
    assert (reading.status, reading.output) == ("fail", "timed out after 3 s")


async def test_http_dependency_refusing_connections(checks: list[HttpCheck]) -> None:
    check = HttpCheck("http://127.0.0.1:9/", name="closed")
    checks.append(check)
    reading = (await HealthRegistry([check]).refresh())["closed"]
    assert reading.status == "fail"
    assert (reading.output or "").startswith("ConnectError")


async def test_http_check_with_a_client_of_yours(http_server: str) -> None:
    async with httpx.AsyncClient(headers={"x-from": "mine"}) as own:
        check = HttpCheck(http_server + "/ok", client=own)
        assert (await check.probe()).status == "pass"
        await check.aclose()  # leaves the caller's client open
        assert not own.is_closed
    assert _Handler.seen_headers[-1]["x-from"] == "mine"


# -- Database --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("database", "query", "status", "output"),
    [
        ("app.db", "SELECT 1", "pass", None),
        ("missing-dir/app.db", "SELECT 1", "fail", "OperationalError: unable to open"),
        ("app.db", "SELECT nope", "fail", "OperationalError: no such column: nope"),
    ],
)
async def test_database_through_dbapi(
    tmp_path: Path, database: str, query: str, status: str, output: str | None
) -> None:
    check = DatabaseCheck(connect=lambda: sqlite3.connect(tmp_path / database), query=query)
    document = await _ready(HealthRegistry([check]))
    entry = _entry(document, "database:responseTime")
    assert entry["status"] == status
    assert entry["componentType"] == "datastore"
    if output is not None:
        assert entry["output"].startswith(output)


async def test_database_through_an_async_callable(tmp_path: Path) -> None:
    def select() -> object:
        with contextlib.closing(sqlite3.connect(tmp_path / "a.db")) as connection:
            return connection.execute("SELECT 1").fetchone()

    async def ping() -> object:
        return await asyncio.to_thread(select)

    async def broken() -> object:
        raise ConnectionResetError("server closed the connection")

    readings = await HealthRegistry(
        [DatabaseCheck(ping=ping), DatabaseCheck(name="replica", ping=broken)]
    ).refresh()
    assert readings["database"].status == "pass"
    assert readings["replica"].output == "ConnectionResetError: server closed the connection"


async def test_a_hung_connect_times_out_and_is_not_piled_up(
    tmp_path: Path, clock: ManualClock
) -> None:
    release = threading.Event()
    connects: list[int] = []

    def connect() -> sqlite3.Connection:
        connects.append(1)
        release.wait(10)
        return sqlite3.connect(tmp_path / "app.db")

    registry = HealthRegistry([DatabaseCheck(connect=connect, timeout=2)], clock=clock)
    try:
        pending = asyncio.ensure_future(registry.refresh())
        await settle()
        clock.advance(2)
        assert (await pending)["database"].output == "timed out after 2 s"
        second = (await registry.refresh())["database"]
        assert second.status == "fail"
        assert "has not returned yet" in (second.output or "")
        assert len(connects) == 1  # no second thread stuck beside the first
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while (await registry.refresh())["database"].status != "pass":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
