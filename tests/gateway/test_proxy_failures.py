"""ReverseProxy when upstreams fail: 502 down or reset, 504 timeouts, 503 open breakers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from sysdesign_kit.breaker import CountWindow
from sysdesign_kit.gateway.proxy import ReverseProxy
from sysdesign_kit.http import default_retry
from tests.transport.flaky_server import FlakyServer, Reply, Reset, Stall, running

FAST_TIMEOUT = httpx.Timeout(0.3, connect=1.0)
# Opens after 2 failed calls of the last 2; stays open 30 s.
TRIP_FAST = {"window": CountWindow(2), "minimum_calls": 2, "open_for": 30.0}


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    yield from running()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw.example")


def _no_retry() -> Any:
    return default_retry(attempts=1)


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_upstream_down_is_502() -> None:
    proxy = ReverseProxy(_closed_port(), retry=_no_retry())
    async with _client(proxy) as client:
        body = _assert_problem(await client.get("/x"), 502)
        head = await client.head("/x")
    await proxy.aclose()
    assert body["title"] == "Bad Gateway"
    assert (head.status_code, head.content) == (502, b"")


async def test_reset_connection_is_502(flaky: FlakyServer) -> None:
    proxy = ReverseProxy(flaky.url, retry=_no_retry())
    flaky.script(Reset())
    async with _client(proxy) as client:
        _assert_problem(await client.post("/orders", content=b"{}"), 502)
    await proxy.aclose()


async def test_upstream_timeout_is_504(flaky: FlakyServer) -> None:
    proxy = ReverseProxy(flaky.url, timeout=FAST_TIMEOUT, retry=_no_retry())
    flaky.script(Stall(5.0))
    async with _client(proxy) as client:
        body = _assert_problem(await client.get("/slow"), 504)
    await proxy.aclose()
    assert body["title"] == "Gateway Timeout"


async def test_total_timeout_is_504(flaky: FlakyServer) -> None:
    # The default retry policy takes total_timeout as its deadline (a policy of one's own
    # brings its own deadline for the requests it may retry).
    proxy = ReverseProxy(flaky.url, total_timeout=0.3)
    flaky.script(Stall(5.0))
    async with _client(proxy) as client:
        _assert_problem(await client.get("/slow"), 504)
    await proxy.aclose()


async def test_idempotent_requests_are_retried_others_not(flaky: FlakyServer) -> None:
    proxy = ReverseProxy(flaky.url, retry=default_retry(attempts=2, wait_initial=0.0))
    async with _client(proxy) as client:
        flaky.script(Reset())
        assert (await client.get("/x")).status_code == 200
        flaky.script(Reset())
        _assert_problem(await client.post("/x", content=b"once"), 502)
    await proxy.aclose()
    assert [r.method for r in flaky.requests] == ["GET", "GET", "POST"]


async def test_upstream_answers_pass_through_even_errors(flaky: FlakyServer) -> None:
    proxy = ReverseProxy(flaky.url, retry=_no_retry())
    flaky.script(Reply(503, b"busy", {"Retry-After": "7"}), Reply(404, b"nope"))
    async with _client(proxy) as client:
        busy = await client.get("/x")
        missing = await client.get("/y")
    await proxy.aclose()
    assert (busy.status_code, busy.text, busy.headers["retry-after"]) == (503, "busy", "7")
    assert (missing.status_code, missing.text) == (404, "nope")


async def test_breaker_opens_and_fails_fast_with_503(flaky: FlakyServer) -> None:
    proxy = ReverseProxy(flaky.url, retry=_no_retry(), breaker_settings=TRIP_FAST)
    flaky.default = Reply(500, b"boom")
    async with _client(proxy) as client:
        assert [(await client.get("/x")).status_code for _ in range(2)] == [500, 500]
        rejected = await client.get("/x")
    await proxy.aclose()
    body = _assert_problem(rejected, 503)
    assert "circuit breaker is open" in body["detail"]
    assert 1 <= int(rejected.headers["retry-after"]) <= 30
    assert len(flaky.requests) == 2  # the third never reached the upstream


async def test_breaker_counts_unreachable_upstreams() -> None:
    proxy = ReverseProxy(_closed_port(), retry=_no_retry(), breaker_settings=TRIP_FAST)
    async with _client(proxy) as client:
        statuses = [(await client.get("/x")).status_code for _ in range(3)]
    await proxy.aclose()
    assert statuses == [502, 502, 503]


async def test_an_open_instance_is_skipped_for_a_healthy_one(flaky: FlakyServer) -> None:
    down = _closed_port()
    proxy = ReverseProxy([down, flaky.url], retry=_no_retry(), breaker_settings=TRIP_FAST)
    async with _client(proxy) as client:
        first = [(await client.get("/x")).status_code for _ in range(4)]
        later = [(await client.get("/x")).status_code for _ in range(4)]
    await proxy.aclose()
    assert first == [502, 200, 502, 200]  # round robin until the dead instance's breaker opens
    assert later == [200, 200, 200, 200]
    assert len(flaky.requests) == 6


async def test_a_client_of_ones_own(flaky: FlakyServer) -> None:
    async with httpx.AsyncClient(timeout=FAST_TIMEOUT) as own:
        proxy = ReverseProxy(flaky.url, client=own)
        assert proxy.transport is None
        flaky.script(Stall(5.0))
        async with _client(proxy) as client:
            _assert_problem(await client.get("/slow"), 504)
            assert (await client.get("/ok")).status_code == 200


async def test_a_bug_below_is_a_502_not_a_500(flaky: FlakyServer) -> None:
    class Broken(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise RuntimeError("a bug")

    proxy = ReverseProxy(flaky.url, transport=Broken(), retry=_no_retry())
    async with _client(proxy) as client:
        body = _assert_problem(await client.get("/x"), 502)
    await proxy.aclose()
    assert body["detail"] == "the request could not be proxied"


async def test_a_streamed_body_goes_to_the_healthy_instance(flaky: FlakyServer) -> None:
    proxy = ReverseProxy([_closed_port(), flaky.url], retry=_no_retry(), breaker_settings=TRIP_FAST)

    async def body() -> AsyncIterator[bytes]:
        yield b"part1;"
        yield b"part2"

    async with _client(proxy) as client:
        for _ in range(4):  # two failures open the dead instance's breaker
            await client.post("/x", content=b"warm")
        answer = await client.post("/x", content=body(), headers={"content-length": "11"})
    await proxy.aclose()
    assert answer.status_code == 200
    assert flaky.requests[-1].body == b"part1;part2"
