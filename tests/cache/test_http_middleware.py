"""ResponseCacheMiddleware against small Starlette apps through httpx.ASGITransport (no
sockets), time on a ManualClock: what is stored, what is served, Age, 304s, Vary, stale
windows, streaming past the size limit, events, the timeline, configuration errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sysdesign_kit.cache.http import ResponseCacheMiddleware
from sysdesign_kit.cache.memory import MemoryBackend
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline

from .conftest import Recorder


class Origin:
    """A Starlette app whose one route answers ``v<call number>`` with the given headers."""

    def __init__(self, headers: dict[str, str] | None = None, status: int = 200) -> None:
        self.headers = headers or {}
        self.status = status
        self.calls = 0
        self.fail: str | None = None  # "raise" or "500"
        self.seen: list[Request] = []
        self.app = Starlette(
            routes=[Route("/r", self.endpoint, methods=["GET", "HEAD", "POST", "PUT", "DELETE"])]
        )

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        self.seen.append(request)
        if self.fail == "raise":
            raise RuntimeError("origin down")
        if self.fail == "500":
            return Response("broken", status_code=500)
        return Response(f"v{self.calls}", status_code=self.status, headers=self.headers)


def client(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def setup(
    headers: dict[str, str] | None = None, status: int = 200, **options: Any
) -> tuple[Origin, ResponseCacheMiddleware, ManualClock]:
    clock = ManualClock()
    origin = Origin(headers, status)
    options.setdefault("clock", clock)
    return origin, ResponseCacheMiddleware(origin.app, **options), clock


async def test_fresh_response_is_served_with_exact_age() -> None:
    origin, cache, clock = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        first = await c.get("/r")
        assert first.text == "v1"
        assert "age" not in first.headers
        second = await c.get("/r")
        assert (second.text, second.headers["age"]) == ("v1", "0")
        assert second.headers["cache-control"] == "max-age=60"
        clock.advance(59.5)
        third = await c.get("/r")
        assert (third.text, third.headers["age"]) == ("v1", "59")
        clock.advance(0.5)  # age 60: no longer fresh
        fourth = await c.get("/r")
        assert fourth.text == "v2"
        assert "age" not in fourth.headers
    assert origin.calls == 2


# Response headers -> whether a second identical GET is answered from the cache.
STORE_CASES: list[tuple[dict[str, str], int, bool]] = [
    ({"cache-control": "max-age=60"}, 200, True),
    ({"cache-control": "public, max-age=60"}, 200, True),
    ({"cache-control": "s-maxage=60"}, 200, True),
    ({"cache-control": "max-age=60"}, 404, True),
    ({"cache-control": "max-age=60"}, 410, True),
    ({"cache-control": "max-age=60"}, 201, False),
    ({"cache-control": "max-age=60"}, 500, False),
    ({}, 200, False),
    ({"cache-control": "no-store"}, 200, False),
    ({"cache-control": "private, max-age=60"}, 200, False),
    ({"cache-control": "no-cache, max-age=60"}, 200, False),
    ({"cache-control": "max-age=60", "set-cookie": "session=abc"}, 200, False),
    ({"cache-control": "max-age=60", "vary": "*"}, 200, False),
    ({"cache-control": "max-age=sixty"}, 200, False),
    ({"cache-control": "max-age=60, max-age=61"}, 200, False),
    ({"cache-control": 'max-age=60, private="x'}, 200, False),
    ({"cache-control": "max-age=0"}, 200, False),
    ({"cache-control": "max-age=60", "age": "60"}, 200, False),
    ({"expires": "0"}, 200, False),
    ({"expires": "not a date"}, 200, False),
]


@pytest.mark.parametrize(("headers", "status", "served"), STORE_CASES)
async def test_what_is_stored(headers: dict[str, str], status: int, served: bool) -> None:
    origin, cache, _ = setup(headers, status)
    async with client(cache) as c:
        first = await c.get("/r")
        second = await c.get("/r")
    assert first.status_code == status  # never a 500 of the cache's making
    assert second.text == ("v1" if served else "v2")
    assert origin.calls == (1 if served else 2)


async def test_s_maxage_wins_over_max_age() -> None:
    _origin, cache, clock = setup({"cache-control": "max-age=100, s-maxage=10"})
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(9)
        assert (await c.get("/r")).text == "v1"
        clock.advance(1)
        assert (await c.get("/r")).text == "v2"


async def test_expires_is_a_fallback_on_the_injected_wall_clock() -> None:
    clock = ManualClock()
    origin = Origin({"expires": formatdate(clock.time() + 30, usegmt=True)})
    cache = ResponseCacheMiddleware(origin.app, clock=clock)
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(29)
        assert (await c.get("/r")).headers["age"] == "29"
        clock.advance(1)
        assert (await c.get("/r")).text == "v2"


async def test_age_from_the_origin_counts() -> None:
    _origin, cache, clock = setup({"cache-control": "max-age=60", "age": "50"})
    async with client(cache) as c:
        await c.get("/r")
        assert (await c.get("/r")).headers["age"] == "50"
        clock.advance(10)
        assert (await c.get("/r")).text == "v2"


async def test_backend_ttl_is_exact() -> None:
    clock = ManualClock()
    backend = MemoryBackend(clock=clock)
    origin = Origin({"cache-control": "max-age=10, stale-if-error=20"})
    cache = ResponseCacheMiddleware(origin.app, clock=clock, backend=backend)
    async with client(cache) as c:
        await c.get("/r")
    assert len(backend) == 1
    clock.advance(29.9)
    assert backend.get("http", "test/r?") is not None
    clock.advance(0.1)
    assert backend.get("http", "test/r?") is None


async def test_query_and_host_are_part_of_the_key() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        assert (await c.get("/r?a=1")).text == "v1"
        assert (await c.get("/r?a=2")).text == "v2"
        assert (await c.get("/r?a=1")).text == "v1"
        assert (await c.get("http://other/r?a=1")).text == "v3"


async def test_vary_keys_on_the_listed_request_fields() -> None:
    origin, cache, _ = setup({"cache-control": "max-age=60", "vary": "Accept-Language"})
    async with client(cache) as c:
        en = {"accept-language": "en"}
        fr = {"accept-language": "fr"}
        assert (await c.get("/r", headers=en)).text == "v1"
        assert (await c.get("/r", headers=fr)).text == "v2"
        assert (await c.get("/r", headers=en)).text == "v1"
        assert (await c.get("/r", headers=fr)).text == "v2"
        assert (await c.get("/r")).text == "v3"  # absent is a value of its own
        assert (await c.get("/r", headers={"accept-language": ""})).text == "v4"
        assert (await c.get("/r")).text == "v3"
        # Only the listed field counts.
        assert (await c.get("/r", headers={**en, "x-other": "1"})).text == "v1"
    assert origin.calls == 4


async def test_etag_if_none_match_gets_a_304_from_the_cache() -> None:
    origin, cache, clock = setup({"cache-control": "max-age=60", "etag": '"abc"'})
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(5)
        hit = await c.get("/r", headers={"if-none-match": '"abc"'})
        assert hit.status_code == 304
        assert hit.content == b""
        assert (hit.headers["etag"], hit.headers["age"]) == ('"abc"', "5")
        assert hit.headers["cache-control"] == "max-age=60"
        weak = await c.get("/r", headers={"if-none-match": 'W/"abc", "zzz"'})
        assert weak.status_code == 304
        other = await c.get("/r", headers={"if-none-match": '"zzz"'})
        assert (other.status_code, other.text) == (200, "v1")
    assert origin.calls == 1


async def test_if_modified_since_gets_a_304_from_the_cache() -> None:
    modified = formatdate(1_600_000_000, usegmt=True)
    origin, cache, _ = setup({"cache-control": "max-age=60", "last-modified": modified})
    async with client(cache) as c:
        await c.get("/r")
        later = formatdate(1_600_000_100, usegmt=True)
        earlier = formatdate(1_500_000_000, usegmt=True)
        hit = await c.get("/r", headers={"if-modified-since": later})
        assert hit.status_code == 304
        assert hit.headers["last-modified"] == modified
        assert (await c.get("/r", headers={"if-modified-since": earlier})).status_code == 200
        assert (await c.get("/r", headers={"if-modified-since": "junk"})).status_code == 200
    assert origin.calls == 1


async def test_head_after_get_is_served_from_the_cache() -> None:
    origin, cache, clock = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        head = await c.head("/r")  # a HEAD miss stores nothing
        assert head.status_code == 200
        get = await c.get("/r")
        assert get.text == "v2"
        clock.advance(3)
        head = await c.head("/r")
        assert head.content == b""
        assert (head.headers["content-length"], head.headers["age"]) == ("2", "3")
    assert origin.calls == 2


async def test_authorization_bypasses_the_cache() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        await c.get("/r")
        auth = {"authorization": "Bearer alice"}
        assert (await c.get("/r", headers=auth)).text == "v2"
        assert (await c.get("/r", headers=auth)).text == "v3"
        assert (await c.get("/r")).text == "v1"


async def test_authorization_cached_per_principal_when_configured() -> None:
    def per_user(scope: Any) -> str | None:
        headers = dict(scope["headers"])
        return f"{headers.get(b'authorization', b'').decode()}|{scope['path']}"

    _origin, cache, _ = setup({"cache-control": "max-age=60"}, key=per_user, cache_authorized=True)
    async with client(cache) as c:
        alice = {"authorization": "Bearer alice"}
        bob = {"authorization": "Bearer bob"}
        assert (await c.get("/r", headers=alice)).text == "v1"
        assert (await c.get("/r", headers=bob)).text == "v2"
        assert (await c.get("/r", headers=alice)).text == "v1"
        assert (await c.get("/r", headers=bob)).text == "v2"


async def test_key_function_can_opt_out_and_its_errors_are_a_bypass() -> None:
    def key(scope: Any) -> str | None:
        if scope["query_string"] == b"boom":
            raise RuntimeError("bad key")
        return None if scope["query_string"] == b"skip" else "k"

    origin, cache, _ = setup({"cache-control": "max-age=60"}, key=key)
    async with client(cache) as c:
        for _ in range(2):
            assert (await c.get("/r?skip")).status_code == 200
            assert (await c.get("/r?boom")).status_code == 200
        assert origin.calls == 4
        await c.get("/r")
        await c.get("/r")
    assert origin.calls == 5


async def test_request_no_cache_goes_to_the_app_and_refreshes_the_entry() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        await c.get("/r")
        assert (await c.get("/r", headers={"cache-control": "no-cache"})).text == "v2"
        assert (await c.get("/r")).text == "v2"
        assert (await c.get("/r", headers={"pragma": "no-cache"})).text == "v3"
        assert (await c.get("/r", headers={"cache-control": "max-age=bad"})).text == "v4"


async def test_request_max_age_and_min_fresh() -> None:
    _origin, cache, clock = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        await c.get("/r")
        # max-age=0 accepts a response of age 0 (RFC 9111 5.2.1.1)...
        assert (await c.get("/r", headers={"cache-control": "max-age=0"})).text == "v1"
        clock.advance(5)
        # ...not an older one.
        assert (await c.get("/r", headers={"cache-control": "max-age=0"})).text == "v2"
        clock.advance(5)
        assert (await c.get("/r", headers={"cache-control": "max-age=10"})).text == "v2"
        assert (await c.get("/r", headers={"cache-control": "min-fresh=50"})).text == "v2"
        assert (await c.get("/r", headers={"cache-control": "min-fresh=55"})).text == "v3"


async def test_request_no_store_is_answered_but_not_stored() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        assert (await c.get("/r", headers={"cache-control": "no-store"})).text == "v1"
        assert (await c.get("/r")).text == "v2"
        assert (await c.get("/r", headers={"cache-control": "no-store"})).text == "v2"


async def test_immutable_is_served_even_to_a_reload() -> None:
    _origin, cache, clock = setup({"cache-control": "max-age=31536000, immutable"})
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(1000)
        reload = await c.get("/r", headers={"cache-control": "no-cache"})
        assert (reload.text, reload.headers["age"]) == ("v1", "1000")


async def test_stale_while_revalidate_answers_stale_and_refreshes_in_background(
    recorder: Recorder,
) -> None:
    origin, cache, clock = setup(
        {"cache-control": "max-age=10, stale-while-revalidate=30"}, listeners=[recorder]
    )
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(15)
        stale = await c.get("/r")
        assert (stale.text, stale.headers["age"]) == ("v1", "15")
        await cache.wait_refreshes()
        assert origin.calls == 2
        fresh = await c.get("/r")
        assert (fresh.text, fresh.headers["age"]) == ("v2", "0")
        clock.advance(40)  # past the lifetime and the window
        assert (await c.get("/r")).text == "v3"
    assert recorder.accessed == ["miss", "stale", "hit", "miss"]


async def test_one_background_refresh_per_key_at_a_time() -> None:
    origin, cache, clock = setup({"cache-control": "max-age=10, stale-while-revalidate=30"})
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(15)
        for _ in range(3):
            assert (await c.get("/r")).text == "v1"
        await cache.wait_refreshes()
    assert origin.calls == 2


async def test_background_refresh_drops_the_client_conditions() -> None:
    origin, cache, clock = setup(
        {"cache-control": "max-age=10, stale-while-revalidate=30", "etag": '"e"'}
    )
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(15)
        assert (await c.get("/r", headers={"if-none-match": '"e"'})).status_code == 304
        await cache.wait_refreshes()
    assert "if-none-match" not in origin.seen[-1].headers
    assert origin.seen[-1].method == "GET"


@pytest.mark.parametrize("failure", ["500", "raise"])
async def test_stale_if_error(failure: str, recorder: Recorder) -> None:
    origin, cache, clock = setup(
        {"cache-control": "max-age=10, stale-if-error=60"}, listeners=[recorder]
    )
    async with client(cache, raise_app_exceptions=False) as c:
        await c.get("/r")
        origin.fail = failure
        clock.advance(30)
        stale = await c.get("/r")
        assert (stale.status_code, stale.text, stale.headers["age"]) == (200, "v1", "30")
        clock.advance(40)  # past the window: the failure shows
        assert (await c.get("/r")).status_code == 500
        origin.fail = None
        assert (await c.get("/r")).text == "v4"
    assert recorder.accessed == ["miss", "stale", "miss", "miss"]


async def test_stale_if_error_still_prefers_a_good_answer(recorder: Recorder) -> None:
    _origin, cache, clock = setup(
        {"cache-control": "max-age=10, stale-if-error=60"}, listeners=[recorder]
    )
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(30)
        assert (await c.get("/r")).text == "v2"
        assert (await c.get("/r")).headers["age"] == "0"
    assert recorder.accessed == ["miss", "miss", "hit"]


async def test_stale_if_error_does_not_hide_a_failure_after_the_response_started() -> None:
    clock = ManualClock()
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        headers = [(b"cache-control", b"max-age=10, stale-if-error=60")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if len(calls) > 1:
            raise RuntimeError("broke mid-body")
        await send({"type": "http.response.body", "body": b"ok"})

    cache = ResponseCacheMiddleware(app, clock=clock)
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(30)
        with pytest.raises(RuntimeError):
            await c.get("/r")


@pytest.mark.parametrize(
    "value",
    [
        "max-age=10, stale-if-error=60, must-revalidate",
        "max-age=10, stale-if-error=60, proxy-revalidate",
        "s-maxage=10, stale-if-error=60",
    ],
)
async def test_must_revalidate_never_serves_stale(value: str) -> None:
    origin, cache, clock = setup({"cache-control": value})
    async with client(cache) as c:
        await c.get("/r")
        origin.fail = "500"
        clock.advance(30)
        assert (await c.get("/r")).status_code == 500


async def test_unsafe_request_invalidates_the_url() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        await c.get("/r")
        assert (await c.get("/r")).text == "v1"
        await c.post("/r")
        assert (await c.get("/r")).text == "v3"
        assert (await c.get("/r")).text == "v3"


def stream_app(chunks: int, size: int) -> tuple[Starlette, list[int]]:
    calls: list[int] = []

    async def endpoint(request: Request) -> StreamingResponse:
        calls.append(1)

        async def body() -> AsyncIterator[bytes]:
            for i in range(chunks):
                yield bytes([65 + i]) * size

        return StreamingResponse(body(), headers={"cache-control": "max-age=60"})

    return Starlette(routes=[Route("/s", endpoint)]), calls


async def test_streaming_past_the_limit_passes_through_unstored() -> None:
    app, calls = stream_app(chunks=4, size=100)
    cache = ResponseCacheMiddleware(app, clock=ManualClock(), max_body_bytes=399)
    async with client(cache) as c:
        for _ in range(2):
            response = await c.get("/s")
            assert response.content == b"A" * 100 + b"B" * 100 + b"C" * 100 + b"D" * 100
    assert len(calls) == 2


async def test_streaming_within_the_limit_is_stored() -> None:
    app, calls = stream_app(chunks=4, size=100)
    cache = ResponseCacheMiddleware(app, clock=ManualClock(), max_body_bytes=400)
    async with client(cache) as c:
        first = await c.get("/s")
        second = await c.get("/s")
    assert first.content == second.content
    assert len(second.content) == 400
    assert len(calls) == 1


async def test_chunks_reach_the_client_before_the_response_ends() -> None:
    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"cache-control", b"max-age=60")],
            }
        )
        for chunk in (b"one", b"two"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            assert received[-1] == chunk  # the client already has it
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            received.append(message["body"])

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    cache = ResponseCacheMiddleware(app, clock=ManualClock())
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "query_string": b"",
        "headers": [(b"host", b"h")],
    }
    await cache(scope, receive, send)
    assert received == [b"one", b"two", b""]
    received.clear()
    await cache(dict(scope), receive, send)  # now a hit, in one piece
    assert received == [b"onetwo"]


async def test_timeline_records_the_cache_stage() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"})
    timelines: list[Timeline] = []

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        timeline = Timeline()
        timelines.append(timeline)
        scope[TIMELINE_SCOPE_KEY] = timeline
        await cache(scope, receive, send)

    async with client(outer) as c:
        await c.get("/r")
        await c.get("/r")
    assert [[name for name, _ in t.stages] for t in timelines] == [["cache"], ["cache"]]


async def test_events_name_the_cache(recorder: Recorder) -> None:
    from sysdesign_kit.events import CacheAccessed

    _origin, cache, _ = setup({"cache-control": "max-age=60"}, listeners=[recorder], name="edge")
    async with client(cache) as c:
        await c.get("/r")
        await c.get("/r")
    events = recorder.of(CacheAccessed)
    assert [(e.component, e.name, e.outcome) for e in events] == [
        ("http_cache:edge", "edge", "miss"),
        ("http_cache:edge", "edge", "hit"),
    ]


class BrokenBackend(MemoryBackend):
    """A backend whose every read and write fails, as an unreachable server's would."""

    def get(self, namespace: str, key: str) -> Any:
        raise BackendUnavailable("down")

    def set(self, namespace: str, key: str, data: bytes, ttl: float, tags: Any = ()) -> None:
        raise BackendUnavailable("down")


async def test_a_failing_backend_is_a_miss_never_a_500() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"}, backend=BrokenBackend())
    async with client(cache) as c:
        assert (await c.get("/r")).text == "v1"
        assert (await c.get("/r")).text == "v2"


async def test_corrupted_bytes_are_a_miss() -> None:
    clock = ManualClock()
    backend = MemoryBackend(clock=clock)
    origin = Origin({"cache-control": "max-age=60"})
    cache = ResponseCacheMiddleware(origin.app, clock=clock, backend=backend)
    backend.set("http", "test/r?", b"\xc1garbage", 60)
    async with client(cache) as c:
        assert (await c.get("/r")).text == "v1"
        assert (await c.get("/r")).text == "v1"


async def test_websockets_and_lifespan_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    cache = ResponseCacheMiddleware(app)
    await cache({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await cache({"type": "websocket", "path": "/"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


@pytest.mark.parametrize(
    "options",
    [
        {"backend": object()},
        {"clock": object()},
        {"namespace": ""},
        {"max_body_bytes": -1},
        {"max_body_bytes": 1.5},
        {"max_body_bytes": True},
        {"key": "not callable"},
        {"cache_authorized": True},
        {"cacheable_statuses": [200, 100]},
        {"cacheable_statuses": ["200"]},
        {"heuristic_fraction": 0},
        {"heuristic_fraction": 2},
        {"heuristic_fraction": "0.1"},
    ],
)
def test_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ResponseCacheMiddleware(Origin().app, **options)


def test_repr() -> None:
    assert "memory" in repr(ResponseCacheMiddleware(Origin().app))


async def test_age_counts_the_time_the_app_took() -> None:
    clock = ManualClock()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        clock.advance(4)  # the app (or the cache upstream of it) takes 4 s
        headers = [(b"cache-control", b"max-age=60"), (b"age", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x"})

    cache = ResponseCacheMiddleware(slow, clock=clock)
    async with client(cache) as c:
        await c.get("/r")
        hit = await c.get("/r")
    assert hit.headers.get_list("age") == ["14"]


async def test_an_authorised_write_still_invalidates() -> None:
    _origin, cache, _ = setup({"cache-control": "max-age=60"})
    async with client(cache) as c:
        await c.get("/r")
        await c.put("/r", headers={"authorization": "Bearer admin"})
        assert (await c.get("/r")).text == "v3"


def gated_app(headers: list[tuple[bytes, bytes]]) -> tuple[Any, list[int], Any]:
    """A raw ASGI app that sends its start, then waits for ``gate`` before its body."""
    import asyncio

    gate = asyncio.Event()
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        number = len(calls)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await gate.wait()
        if scope["query_string"] == b"boom" and number == 1:
            raise RuntimeError("leader failed")
        await send({"type": "http.response.body", "body": f"v{number}".encode()})

    return app, calls, gate


async def settle() -> None:
    import asyncio

    for _ in range(20):
        await asyncio.sleep(0)


async def test_concurrent_misses_are_coalesced(recorder: Recorder) -> None:
    import asyncio

    app, calls, gate = gated_app([(b"cache-control", b"max-age=60")])
    cache = ResponseCacheMiddleware(app, clock=ManualClock(), listeners=[recorder])
    async with client(cache) as c:
        requests = [asyncio.ensure_future(c.get("/r")) for _ in range(5)]
        await settle()
        assert len(calls) == 1
        gate.set()
        responses = await asyncio.gather(*requests)
    assert [r.text for r in responses] == ["v1"] * 5
    assert sorted(recorder.accessed) == ["coalesced"] * 4 + ["miss"]


async def test_waiters_are_let_go_when_the_response_will_not_be_stored() -> None:
    import asyncio

    app, calls, gate = gated_app([(b"cache-control", b"no-store")])
    cache = ResponseCacheMiddleware(app, clock=ManualClock())
    async with client(cache) as c:
        requests = [asyncio.ensure_future(c.get("/r")) for _ in range(3)]
        await settle()
        assert len(calls) == 3  # released at the leader's start, not its end
        gate.set()
        responses = await asyncio.gather(*requests)
    assert sorted(r.text for r in responses) == ["v1", "v2", "v3"]


async def test_waiters_are_let_go_when_the_leader_fails() -> None:
    import asyncio

    app, calls, gate = gated_app([(b"cache-control", b"max-age=60")])
    cache = ResponseCacheMiddleware(app, clock=ManualClock())
    async with client(cache, raise_app_exceptions=False) as c:
        requests = [asyncio.ensure_future(c.get("/r?boom")) for _ in range(3)]
        await settle()
        assert len(calls) == 1
        gate.set()
        responses = await asyncio.gather(*requests, return_exceptions=True)
    leader, *waiters = responses
    assert isinstance(leader, httpx.Response)
    assert leader.text == ""  # cut short after its start
    # The waiters went to the app themselves (the second may find the first's answer).
    assert len(calls) in (2, 3)
    assert all(isinstance(r, httpx.Response) and r.text in ("v2", "v3") for r in waiters)


async def test_coalescing_can_be_turned_off() -> None:
    import asyncio

    app, calls, gate = gated_app([(b"cache-control", b"max-age=60")])
    cache = ResponseCacheMiddleware(app, clock=ManualClock(), coalesce=False)
    async with client(cache) as c:
        requests = [asyncio.ensure_future(c.get("/r")) for _ in range(3)]
        await settle()
        assert len(calls) == 3
        gate.set()
        await asyncio.gather(*requests)


async def test_a_failed_background_refresh_keeps_the_stale_answer() -> None:
    origin, cache, clock = setup({"cache-control": "max-age=10, stale-while-revalidate=30"})
    async with client(cache) as c:
        await c.get("/r")
        clock.advance(15)
        origin.fail = "raise"
        assert (await c.get("/r")).text == "v1"
        await cache.wait_refreshes()  # the refresh raised; nothing escaped
        origin.fail = None
        assert (await c.get("/r")).text == "v1"  # still stale, and a new refresh starts
        await cache.wait_refreshes()
        assert (await c.get("/r")).text == "v3"
