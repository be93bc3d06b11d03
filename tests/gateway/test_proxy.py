"""ReverseProxy against real upstream servers: paths, headers, forwarding, request ids."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway.proxy import ReverseProxy, RoundRobin, Upstream, UpstreamPicker
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline
from tests.gateway.upstream_server import Served, wait_for
from tests.gateway.upstream_server import Upstream as UpstreamApp

Seen = dict[str, Any]


@pytest.fixture
def upstream() -> Iterator[tuple[UpstreamApp, str]]:
    app = UpstreamApp()
    with Served(app) as served:
        yield app, served.url


def _client(app: Any, peer: tuple[str, int] = ("203.0.113.9", 5000)) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=peer), base_url="http://gw.example"
    )


@pytest.fixture
async def proxy(upstream: tuple[UpstreamApp, str]) -> AsyncIterator[ReverseProxy]:
    app = ReverseProxy(upstream[1])
    yield app
    await app.aclose()


def _headers(seen: Seen) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        out.setdefault(name, []).append(value)
    return out


async def test_path_query_and_body_pass_byte_for_byte(
    proxy: ReverseProxy, upstream: tuple[UpstreamApp, str]
) -> None:
    async with _client(proxy) as client:
        got = await client.get("/a%2Fb/c%252F/%E2%9C%93", params={"q": "x/y z", "r": "1"})
        posted = await client.post("/orders?x", content=b"payload")
    assert got.status_code == 200
    first, second = upstream[0].seen
    assert first["raw_path"] == "/a%2Fb/c%252F/%E2%9C%93"
    assert first["query"] == "q=x%2Fy+z&r=1"
    assert (second["method"], second["raw_path"], second["query"]) == ("POST", "/orders", "x")
    assert second["body"] == "payload"
    assert _headers(second)["content-length"] == ["7"]
    assert posted.json()["body"] == "payload"


async def test_a_base_path_is_prepended(upstream: tuple[UpstreamApp, str]) -> None:
    app = ReverseProxy(upstream[1] + "/base/")
    async with _client(app) as client:
        await client.get("/x")
    await app.aclose()
    assert upstream[0].seen[0]["raw_path"] == "/base/x"


async def test_hop_by_hop_request_headers_are_removed(
    proxy: ReverseProxy, upstream: tuple[UpstreamApp, str]
) -> None:
    sent = {
        "Connection": "keep-alive, X-Secret",
        "X-Secret": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Proxy-Connection": "keep-alive",
        "Expect": "100-continue",
        "X-Custom": "kept",
        "Authorization": "Bearer kept",
    }
    async with _client(proxy) as client:
        await client.get("/echo", headers=sent)
    seen = _headers(upstream[0].seen[0])
    for name in ("x-secret", "keep-alive", "te", "trailer", "upgrade", "expect"):
        assert name not in seen, name
    assert not [n for n in seen if n.startswith("proxy-")]
    assert seen["x-custom"] == ["kept"]
    assert seen["authorization"] == ["Bearer kept"]
    # the upstream connection's own keep-alive is httpx's business, not the client's header
    assert "X-Secret" not in str(seen.get("connection"))


async def test_hop_by_hop_response_headers_are_removed(proxy: ReverseProxy) -> None:
    async with _client(proxy) as client:
        response = await client.get("/hop")
    assert response.text == "hop"
    names = {n.lower() for n in response.headers}
    assert not names & {"connection", "x-hop-named", "keep-alive", "proxy-authenticate"}
    assert not names & {"date", "server"}  # the server in front sends its own
    assert response.headers["x-upstream"] == "yes"
    assert response.headers["set-cookie"] == "a=1; Path=/"


async def test_host_is_the_upstreams_unless_preserved(upstream: tuple[UpstreamApp, str]) -> None:
    app, url = upstream
    for preserve in (False, True):
        proxy = ReverseProxy(url, preserve_host=preserve)
        async with _client(proxy) as client:
            await client.get("/echo")
        await proxy.aclose()
    rewritten, preserved = (_headers(s)["host"] for s in app.seen)
    assert rewritten == [url.removeprefix("http://")]
    assert preserved == ["gw.example"]


async def test_forwarding_headers_replace_what_a_client_sent(
    proxy: ReverseProxy, upstream: tuple[UpstreamApp, str]
) -> None:
    spoofed = {
        "X-Forwarded-For": "1.2.3.4",
        "Forwarded": "for=1.2.3.4;proto=https",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
    }
    async with _client(proxy) as client:
        await client.get("/echo", headers=spoofed)
    seen = _headers(upstream[0].seen[0])
    assert seen["x-forwarded-for"] == ["203.0.113.9"]
    assert seen["forwarded"] == ['for=203.0.113.9;proto=http;host="gw.example"']
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["gw.example"]


async def test_a_trusted_proxys_chain_is_appended_to(upstream: tuple[UpstreamApp, str]) -> None:
    app, url = upstream
    proxy = ReverseProxy(url, trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])
    chain = {
        "X-Forwarded-For": "198.51.100.7",
        "Forwarded": "for=198.51.100.7;proto=https",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example",
    }
    async with _client(proxy, peer=("10.1.2.3", 40000)) as client:
        await client.get("/echo", headers=chain)
    async with _client(proxy, peer=("2001:db8::1", 40000)) as client:
        await client.get("/echo")
    async with _client(proxy, peer=("192.0.2.1", 40000)) as client:  # not trusted
        await client.get("/echo", headers=chain)
    await proxy.aclose()
    trusted, ipv6, untrusted = (_headers(s) for s in app.seen)
    assert trusted["x-forwarded-for"] == ["198.51.100.7, 10.1.2.3"]
    assert trusted["forwarded"] == [
        'for=198.51.100.7;proto=https, for=10.1.2.3;proto=http;host="gw.example"'
    ]
    assert trusted["x-forwarded-proto"] == ["https"]
    assert trusted["x-forwarded-host"] == ["shop.example"]
    assert ipv6["x-forwarded-for"] == ["2001:db8::1"]
    assert ipv6["forwarded"] == ['for="[2001:db8::1]";proto=http;host="gw.example"']
    assert untrusted["x-forwarded-for"] == ["192.0.2.1"]
    assert untrusted["x-forwarded-host"] == ["gw.example"]


async def test_unknown_peer_and_odd_host(
    proxy: ReverseProxy, upstream: tuple[UpstreamApp, str]
) -> None:
    async with _client(proxy, peer=("testclient", 1)) as client:
        await client.get("/echo", headers={"Host": 'bad"host'})
    seen = _headers(upstream[0].seen[0])
    assert "x-forwarded-for" not in seen
    assert seen["forwarded"] == ["for=unknown;proto=http"]
    assert "x-forwarded-host" not in seen


async def test_request_id_is_forwarded(upstream: tuple[UpstreamApp, str]) -> None:
    app, url = upstream
    proxy = ReverseProxy(url)

    async def with_id(scope: Any, receive: Any, send: Any) -> None:
        scope["sysdesign_kit.request_id"] = "gw-req-1"
        await proxy(scope, receive, send)

    async with _client(with_id) as client:
        await client.get("/echo", headers={"X-Request-ID": "client-said"})
    async with _client(proxy) as client:
        await client.get("/echo", headers={"X-Request-ID": "abc-123"})
        await client.get("/echo", headers={"X-Request-ID": "x" * 200})
    await proxy.aclose()
    ids = [_headers(s).get("x-request-id") for s in app.seen]
    assert ids == [["gw-req-1"], ["abc-123"], None]


async def test_round_robin_and_head(upstream: tuple[UpstreamApp, str]) -> None:
    other = UpstreamApp()
    with Served(other) as served:
        proxy = ReverseProxy([upstream[1], served.url])
        async with _client(proxy) as client:
            for _ in range(4):
                assert (await client.get("/echo")).status_code == 200
            head = await client.head("/echo")
        await proxy.aclose()
    assert (len(upstream[0].seen), len(other.seen)) == (3, 2)
    assert head.status_code == 200
    assert head.content == b""


async def test_websocket_refused_and_lifespan_closes_the_client() -> None:
    proxy = ReverseProxy("http://127.0.0.1:9")
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    await proxy({"type": "websocket", "path": "/", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1011}]
    sent.clear()
    await proxy({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert proxy.is_closed


@pytest.mark.parametrize(
    "bad",
    [
        {"upstreams": "ftp://x"},
        {"upstreams": "not a url"},
        {"upstreams": "http://u:p@host"},
        {"upstreams": "http://host/?q=1"},
        {"upstreams": []},
        {"upstreams": "http://h", "trusted_proxies": "10.0.0.0/8"},
        {"upstreams": "http://h", "trusted_proxies": ["not-a-network"]},
        {"upstreams": "http://h", "timeout": 5},
        {"upstreams": "http://h", "client": object()},
    ],
)
def test_bad_settings(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ReverseProxy(**bad)


def test_upstream_parse_and_round_robin() -> None:
    parsed = Upstream.parse("https://[2001:db8::5]/svc/")
    assert (parsed.host, parsed.port, parsed.base_path, parsed.host_header) == (
        "2001:db8::5", 443, b"/svc", b"[2001:db8::5]"
    )  # fmt: skip
    picker = RoundRobin(["http://a:1", Upstream.parse("http://b:2")])
    assert [picker.pick().host for _ in range(3)] == ["a", "b", "a"]
    assert len(picker) == 2
    assert msgspec.json.encode(len(RoundRobin("http://a"))) == b"1"


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


async def test_a_compressed_body_passes_raw() -> None:
    packed = gzip.compress(b"hello " * 100)

    async def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-encoding": "gzip", "content-length": str(len(packed))}
        return httpx.Response(200, headers=headers, stream=_Chunks(packed[:10], packed[10:]))

    proxy = ReverseProxy("http://up", transport=httpx.MockTransport(handler))
    async with _client(proxy) as client:
        response = await client.get("/x")
    await proxy.aclose()
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "hello " * 100  # decoded once, by the client


async def test_a_transport_answering_with_a_read_body() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    proxy = ReverseProxy("http://up:8080/svc", transport=httpx.MockTransport(handler))
    async with _client(proxy) as client:
        response = await client.post("/orders", content=b"{}")
    await proxy.aclose()
    assert (response.status_code, response.json()) == (201, {"ok": True})
    assert str(seen[0].url) == "http://up:8080/svc/orders"


class _Fixed:
    """A picker of one's own (as discovery would plug in)."""

    def __init__(self, url: str) -> None:
        self.upstream = Upstream.parse(url)
        self.picks = 0

    def pick(self) -> Upstream:
        self.picks += 1
        return self.upstream

    def __len__(self) -> int:
        return 1


async def test_a_picker_of_ones_own_and_the_timeline(upstream: tuple[UpstreamApp, str]) -> None:
    picker = _Fixed(upstream[1])
    assert isinstance(picker, UpstreamPicker)
    proxy = ReverseProxy(picker)
    timeline = Timeline()

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        scope[TIMELINE_SCOPE_KEY] = timeline
        await proxy(scope, receive, send)

    async with _client(timed) as client:
        assert (await client.get("/echo")).status_code == 200
    await proxy.aclose()
    assert picker.picks == 1
    assert [name for name, _ in timeline.stages] == ["upstream"]


async def test_pool_exhausted_is_503(upstream: tuple[UpstreamApp, str]) -> None:
    app, url = upstream
    proxy = ReverseProxy(
        url,
        limits=httpx.Limits(max_connections=1),
        timeout=httpx.Timeout(5.0, pool=0.2),
    )
    async with _client(proxy) as client:
        holding = asyncio.ensure_future(client.get("/stream?chunks=2"))
        assert await wait_for(app.arrived)  # the only connection is taken
        waiting = await client.get("/echo")
        app.release.set()
        assert (await holding).text == "first;chunk1;"
    await proxy.aclose()
    assert waiting.status_code == 503
    assert waiting.json()["detail"] == "no connection to the upstream became free"


async def test_a_server_breaking_the_receive_protocol_is_not_taken_for_a_disconnect() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)  # the watcher reads receive meanwhile
        return httpx.Response(200, stream=_Chunks(b"a", b"b"))

    proxy = ReverseProxy("http://up", transport=httpx.MockTransport(handler))
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}  # forever, at once

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    await proxy(scope, receive, send)
    await proxy.aclose()
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"ab"
