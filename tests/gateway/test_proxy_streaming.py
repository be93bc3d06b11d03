"""ReverseProxy streaming over real sockets: client -> uvicorn(gateway) -> uvicorn(upstream).

Nothing here waits on timing: the upstream holds its last chunks until the test has seen
the first one (so a buffering proxy would hang, not pass), and the request body's second
chunk is only produced once the upstream has received the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sysdesign_kit.gateway.proxy import ReverseProxy
from tests.gateway.upstream_server import Served, Upstream, wait_for

LOOPBACK = httpx.Timeout(10.0)


@pytest.fixture
def stack() -> Iterator[tuple[Upstream, str]]:
    """An upstream, and the URL of a gateway proxying to it (both served by uvicorn)."""
    upstream = Upstream()
    with Served(upstream) as served_upstream:
        proxy = ReverseProxy(served_upstream.url)
        with Served(proxy, lifespan="on") as gateway:
            yield upstream, gateway.url


async def test_response_streams_chunk_by_chunk(stack: tuple[Upstream, str]) -> None:
    upstream, url = stack
    async with (
        httpx.AsyncClient(timeout=LOOPBACK) as client,
        client.stream("GET", url + "/stream?chunks=4") as response,
    ):
        chunks = response.aiter_raw()
        first = await chunks.__anext__()
        # the upstream has not sent the rest yet: it waits for this event
        assert first == b"first;"
        assert not upstream.release.is_set()
        upstream.release.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert response.status_code == 200
    assert rest == b"chunk1;chunk2;chunk3;"


async def test_request_body_streams_to_the_upstream(stack: tuple[Upstream, str]) -> None:
    upstream, url = stack

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 65536
        # the second part only exists once the upstream holds the first
        assert await wait_for(upstream.first_chunk)
        yield b"b" * 1000

    async with httpx.AsyncClient(timeout=LOOPBACK) as client:
        response = await client.post(url + "/upload", content=body())
    assert response.status_code == 200
    answer = response.json()
    assert answer["size"] == 65536 + 1000
    assert answer["chunks"] >= 2


async def test_a_large_body_both_ways(stack: tuple[Upstream, str]) -> None:
    _, url = stack
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]

    async with httpx.AsyncClient(timeout=LOOPBACK) as client:
        sized = await client.put(url + "/upload", content=payload)
        chunked = await client.post(url + "/upload", content=body())
        echoed = await client.post(url + "/echo", content=b"x" * 300_000)
    assert sized.json()["size"] == chunked.json()["size"] == len(payload)
    assert len(echoed.json()["body"]) == 300_000


async def test_client_leaving_mid_stream_stops_the_upstream(stack: tuple[Upstream, str]) -> None:
    upstream, url = stack
    async with (
        httpx.AsyncClient(timeout=LOOPBACK) as client,
        client.stream("GET", url + "/forever") as response,
    ):
        async for _ in response.aiter_raw():
            break
    # closing the stream closed the client's connection: the gateway must drop the upstream's
    assert await wait_for(upstream.disconnected)


async def test_client_leaving_while_the_upstream_thinks(stack: tuple[Upstream, str]) -> None:
    upstream, url = stack
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=0.3)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url + "/slow?seconds=30")
    assert await wait_for(upstream.disconnected)


async def test_client_leaving_mid_upload_stops_the_upstream(stack: tuple[Upstream, str]) -> None:
    upstream, url = stack
    gone = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await gone.wait()  # never: the client is cancelled while here
        yield b"never"  # pragma: no cover

    async with httpx.AsyncClient(timeout=LOOPBACK) as client:
        sending = asyncio.ensure_future(
            client.post(url + "/upload", content=body(), headers={"content-length": "5000"})
        )
        assert await wait_for(upstream.first_chunk)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
    assert await wait_for(upstream.disconnected)


async def test_an_upstream_breaking_mid_body_truncates_the_answer(
    stack: tuple[Upstream, str],
) -> None:
    _, url = stack
    async with httpx.AsyncClient(timeout=LOOPBACK) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url + "/broken")
        # the gateway still serves
        assert (await client.get(url + "/echo")).status_code == 200
