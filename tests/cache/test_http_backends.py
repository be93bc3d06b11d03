"""ResponseCacheMiddleware over a backend that does I/O (its coroutines are awaited), over a
real Redis, and under ObservabilityMiddleware (the cache stage reaches RequestFinished)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sysdesign_kit.cache.http import ResponseCacheMiddleware
from sysdesign_kit.cache.memory import MemoryBackend
from sysdesign_kit.cache.redis import RedisBackend
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.events import Event, RequestFinished
from sysdesign_kit.observability.middleware import ObservabilityMiddleware


class Remote(MemoryBackend):
    """A memory backend posing as one that does I/O: only its coroutines may be used."""

    local = False
    kind = "remote"

    def get(self, namespace: str, key: str) -> Any:
        raise AssertionError("a non-local backend's sync get must not be called")

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        raise AssertionError("a non-local backend's sync set must not be called")

    def delete(self, namespace: str, key: str) -> bool:
        raise AssertionError("a non-local backend's sync delete must not be called")

    async def aget(self, namespace: str, key: str) -> bytes | None:
        return MemoryBackend.get(self, namespace, key)  # type: ignore[no-any-return]

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        MemoryBackend.set(self, namespace, key, data, ttl, tags)

    async def adelete(self, namespace: str, key: str) -> bool:
        return MemoryBackend.delete(self, namespace, key)


def origin_app(headers: dict[str, str]) -> tuple[Starlette, list[int]]:
    calls: list[int] = []

    async def endpoint(request: Request) -> Response:
        calls.append(1)
        return Response(f"v{len(calls)}", headers=headers)

    routes = [Route("/r", endpoint, methods=["GET", "POST"])]
    return Starlette(routes=routes), calls


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_backend_doing_io_is_awaited() -> None:
    clock = ManualClock()
    app, calls = origin_app({"cache-control": "max-age=60", "vary": "accept"})
    cache = ResponseCacheMiddleware(app, clock=clock, backend=Remote(clock=clock))
    async with client(cache) as c:
        assert (await c.get("/r")).text == "v1"
        clock.advance(2)
        hit = await c.get("/r")
        assert (hit.text, hit.headers["age"]) == ("v1", "2")
        await c.post("/r")
        assert (await c.get("/r")).text == "v3"
    assert len(calls) == 3


@pytest.mark.redis
async def test_responses_shared_through_redis(redis_url: str, redis_prefix: str) -> None:
    clock = ManualClock()
    app, calls = origin_app({"cache-control": "max-age=60", "etag": '"e1"'})
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix)
    try:
        # Two middleware instances, as two processes would have, on one Redis.
        first = ResponseCacheMiddleware(app, clock=clock, backend=backend)
        second = ResponseCacheMiddleware(app, clock=clock, backend=backend)
        async with client(first) as c:
            assert (await c.get("/r")).text == "v1"
        clock.advance(7)
        async with client(second) as c:
            hit = await c.get("/r")
            assert (hit.text, hit.headers["age"]) == ("v1", "7")
            assert (await c.get("/r", headers={"if-none-match": '"e1"'})).status_code == 304
        assert len(calls) == 1
    finally:
        await backend.aclose()


async def test_the_cache_stage_reaches_request_finished() -> None:
    seen: list[Event] = []
    app, _ = origin_app({"cache-control": "max-age=60"})
    cache = ResponseCacheMiddleware(app, clock=ManualClock())
    outer = ObservabilityMiddleware(cache, listeners=[seen.append], access_log=False)
    async with client(outer) as c:
        await c.get("/r")
        await c.get("/r")
    finished = [e for e in seen if isinstance(e, RequestFinished)]
    assert [[name for name, _ in e.stages] for e in finished] == [
        ["cache", "app"],
        ["cache", "app"],
    ]
    assert all(e.status == 200 for e in finished)
