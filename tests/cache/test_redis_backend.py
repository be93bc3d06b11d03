"""RedisBackend on the real server: key layout, server-side TTLs, failures, and a `Cache`
over it (get_or_load, ``@cached``, sync and async, corrupted entries, Redis unreachable)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import AsyncIterator, Iterator
from unittest import mock

import pytest
import redis

from sysdesign_kit.backends.redis import parse_redis_url
from sysdesign_kit.breaker import CircuitBreaker
from sysdesign_kit.cache import Cache, MemoryBackend, cached
from sysdesign_kit.cache.guarded import GuardedBackend
from sysdesign_kit.cache.redis import RedisBackend
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError, InvalidInput
from sysdesign_kit.events import BackendFailure, BreakerTransitioned

from .conftest import Recorder

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def backend(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix)
    yield backend
    await backend.aclose()


def refused_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


# -- keys and TTLs ----------------------------------------------------------------------------


def test_keys_share_the_namespace_slot(
    backend: RedisBackend, client: redis.Redis, redis_prefix: str
) -> None:
    backend.set("products", "p:1", b"v", 60, ["shop"])
    backend.bump("products")
    backend.invalidate_tags(["shop"])
    keys = sorted(client.scan_iter(match=f"{redis_prefix}:*"))
    assert keys == [
        f"{redis_prefix}:c:e:p%3A1:{{products}}".encode(),
        f"{redis_prefix}:c:t:{{shop}}".encode(),
        f"{redis_prefix}:c:v:{{products}}".encode(),
    ]
    entry, version = backend.entry_key("products", "p:1"), backend.version_key("products")
    assert entry.rsplit(b"{", 1)[1] == version.rsplit(b"{", 1)[1] == b"products}"
    assert backend.entry_key("{a}", "k").endswith(b"{%7Ba%7D}")


def test_entry_ttl_is_set_server_side_in_milliseconds(
    backend: RedisBackend, client: redis.Redis
) -> None:
    backend.set("ns", "k", b"v", 30.0)
    assert 29_000 < client.pttl(backend.entry_key("ns", "k")) <= 30_000
    backend.set("ns", "tiny", b"v", 0.0001)  # rounded up to 1 ms, never to "no expiry"
    assert client.pttl(backend.entry_key("ns", "tiny")) in (-2, 0, 1)


def test_versions_and_tags_do_not_expire(backend: RedisBackend, client: redis.Redis) -> None:
    backend.bump("ns")
    backend.invalidate_tags(["t"])
    assert client.ttl(backend.version_key("ns")) == -1
    assert client.ttl(backend.tag_key("t")) == -1


def test_repr_and_options(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url, prefix="app", socket_timeout=0.5)
    assert repr(backend) == f"RedisBackend({backend.settings.location!r}, prefix='app')"
    assert backend.settings.socket_timeout == 0.5
    assert backend.kind == "redis"
    assert backend.local is False
    backend.close()
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(redis_url, prefix="has space")
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(redis_url, unknown=1)
    with pytest.raises(ConfigurationError):
        RedisBackend("redis://not-settings")  # type: ignore[arg-type]


async def test_each_event_loop_gets_its_own_client(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix)
    await backend.aset("ns", "k", b"v", 60)
    first = backend.aclient()
    assert backend.aclient() is first

    def other_loop() -> bytes | None:
        async def read() -> bytes | None:
            assert backend.aclient() is not first
            value = await backend.aget("ns", "k")
            await backend.aclose()  # this loop's connections
            return value

        return asyncio.run(read())

    assert await asyncio.to_thread(other_loop) == b"v"
    assert await backend.aget("ns", "k") == b"v"
    await backend.aclose()


# -- failures ---------------------------------------------------------------------------------


def test_a_refused_port_is_backend_unavailable() -> None:
    backend = RedisBackend.from_url(refused_url())
    calls = [
        lambda: backend.get("ns", "k"),
        lambda: backend.set("ns", "k", b"v", 60, ["t"]),
        lambda: backend.delete("ns", "k"),
        lambda: backend.version("ns"),
        lambda: backend.bump("ns"),
        lambda: backend.invalidate_tags(["t"]),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailable) as caught:
            call()
        assert isinstance(caught.value.__cause__, redis.ConnectionError | OSError)
    backend.close()


async def test_a_refused_port_is_backend_unavailable_async() -> None:
    backend = RedisBackend.from_url(refused_url())
    calls = [
        backend.aget("ns", "k"),
        backend.aset("ns", "k", b"v", 60, ["t"]),
        backend.adelete("ns", "k"),
        backend.aversion("ns"),
        backend.abump("ns"),
        backend.ainvalidate_tags(["t"]),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailable) as caught:
            await call
        assert caught.value.__cause__ is not None
    await backend.aclose()


async def test_a_key_of_the_wrong_type_is_backend_unavailable(
    backend: RedisBackend, client: redis.Redis
) -> None:
    client.set(backend.entry_key("ns", "k"), b"a string, not an entry hash")
    client.hset(backend.version_key("other"), "f", "v")
    for call in (
        lambda: backend.get("ns", "k"),
        lambda: backend.set("other", "k", b"v", 60),
        lambda: backend.bump("other"),
    ):
        with pytest.raises(BackendUnavailable) as caught:
            call()
        assert isinstance(caught.value.__cause__, redis.ResponseError)
    with pytest.raises(BackendUnavailable) as caught:
        await backend.aget("ns", "k")
    assert isinstance(caught.value.__cause__, redis.ResponseError)


async def test_a_silent_server_is_a_timeout() -> None:
    # A socket that accepts connections (the kernel's backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.05)
        with pytest.raises(BackendUnavailable) as caught:
            backend.get("ns", "k")
        assert isinstance(caught.value.__cause__, redis.TimeoutError | TimeoutError)
        with pytest.raises(BackendUnavailable) as caught:
            await backend.aget("ns", "k")
        assert isinstance(caught.value.__cause__, redis.TimeoutError | TimeoutError)
        await backend.aclose()


async def test_a_lost_script_is_sent_again(backend: RedisBackend) -> None:
    # NOSCRIPT (a restart or failover) is simulated by a script whose SHA the server never saw.
    from sysdesign_kit.cache import redis as module

    fresh = module.Script(module.READ_SCRIPT.source + "\n-- fresh", name="cache read")
    backend.set("ns", "k", b"v", 60)
    with mock.patch.object(module, "READ_SCRIPT", fresh):
        assert backend.get("ns", "k") == b"v"
        assert await backend.aget("ns", "k") == b"v"


# -- a Cache over it --------------------------------------------------------------------------


async def test_get_or_load_and_invalidation(backend: RedisBackend, recorder: Recorder) -> None:
    cache = Cache("products", backend=backend, ttl=60, listeners=[recorder])
    loads: list[int] = []

    async def load() -> dict[str, int]:
        loads.append(1)
        return {"id": 1}

    assert await cache.get_or_load("p:1", load, tags=["shop"]) == {"id": 1}
    assert await cache.get_or_load("p:1", load, tags=["shop"]) == {"id": 1}
    assert len(loads) == 1
    await cache.invalidate_tags("shop")
    assert await cache.get("p:1") is None
    await cache.set("p:2", [1, 2])
    assert await cache.invalidate_all() == 1
    assert await cache.get("p:2") is None
    await cache.set("p:3", "x")
    assert await cache.delete("p:3") is True
    assert recorder.accessed[:2] == ["miss", "hit"]


async def test_cached_decorator_async_and_sync(backend: RedisBackend) -> None:
    cache = Cache("deco", backend=backend, ttl=60)
    calls: list[int] = []

    @cached(cache=cache, key="item:{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        calls.append(item_id)
        return {"id": item_id}

    @cached(cache=cache, key="blocking:{item_id}")
    def blocking(item_id: int) -> list[int]:
        calls.append(-item_id)
        return [item_id]

    assert [await item(1), await item(1), await item(2)] == [{"id": 1}, {"id": 1}, {"id": 2}]
    assert await asyncio.to_thread(blocking, 3) == [3]
    assert await asyncio.to_thread(blocking, 3) == [3]
    assert calls == [1, 2, -3]
    assert backend.get("deco", "item:1") is not None


def test_sync_cache(backend: RedisBackend) -> None:
    sync = Cache("sync", backend=backend, ttl=60).sync
    assert sync.get_or_load("k", lambda: 41) == 41
    assert sync.get_or_load("k", lambda: 42) == 41
    sync.set("other", "v")
    assert sync.get("other") == "v"
    assert sync.delete("other") is True
    assert sync.invalidate_all() == 1
    assert sync.get("k") is None


async def test_corrupted_bytes_read_as_a_miss(
    backend: RedisBackend, client: redis.Redis, recorder: Recorder
) -> None:
    cache = Cache("c", backend=backend, ttl=60, listeners=[recorder])
    await cache.set("k", {"a": 1})
    client.hset(backend.entry_key("c", "k"), "d", b"\xc1\xff not msgpack")
    assert await cache.get("k") is None
    assert await cache.get_or_load("k", _value(7)) == 7
    assert cache.sync.get("k") == 7
    client.hset(backend.entry_key("c", "k"), "d", b"\xc1")
    assert cache.sync.get("k", "default") == "default"
    # get_or_load reads it twice: on the miss and again once it holds the load lock.
    assert [e.operation for e in recorder.of(BackendFailure)] == ["decode"] * 4


async def test_unreachable_redis_fails_open(recorder: Recorder) -> None:
    backend = RedisBackend(parse_redis_url(refused_url()))
    # Bare (guard=False): every call meets the refused port itself.
    cache = Cache("down", backend=backend, ttl=60, guard=False, listeners=[recorder])
    loads: list[int] = []

    async def load() -> str:
        loads.append(1)
        return "fresh"

    assert await cache.get_or_load("k", load) == "fresh"
    assert await cache.get_or_load("k", load) == "fresh"
    assert len(loads) == 2
    assert cache.sync.get_or_load("k", lambda: "sync") == "sync"

    @cached(cache=cache, key="{n}")
    async def decorated(n: int) -> int:
        return n * 2

    assert await decorated(4) == 8
    failures = recorder.of(BackendFailure)
    assert {(f.operation, f.outcome) for f in failures} == {
        ("get", "miss"),
        ("lock", "load"),
        ("set", "not_cached"),
    }
    assert all(f.backend == "redis" and "ConnectionError" in f.error for f in failures)
    with pytest.raises(BackendUnavailable):
        await cache.set("k", "explicit writes raise")
    await backend.aclose()


def _value(value: int):  # type: ignore[no-untyped-def]
    async def load() -> int:
        return value

    return load


# -- the asyncio connections ------------------------------------------------------------------


async def test_a_connection_closed_by_the_server_while_idle_is_replaced(
    redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    name = redis_prefix.replace(":", "-")
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, client_name=name)
    await backend.aset("ns", "k", b"v", 60)
    ids = [c["id"] for c in client.client_list() if c.get("name") == name]
    assert ids
    for client_id in ids:  # only this test's connections
        client.client_kill_filter(_id=client_id)
    assert await backend.aget("ns", "k") == b"v"
    await backend.aclose()


async def test_a_cancelled_call_does_not_leave_its_connection_out_of_step(
    backend: RedisBackend,
) -> None:
    await backend.aset("ns", "k", b"v", 60)
    for _ in range(20):
        task = asyncio.ensure_future(backend.aget("ns", "k"))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await backend.aset("ns", "other", b"w", 60)
    assert [await backend.aget("ns", "k"), await backend.aget("ns", "other")] == [b"v", b"w"]


async def test_concurrent_calls_and_the_idle_cap(backend: RedisBackend) -> None:
    from sysdesign_kit.cache import redis as module

    await backend.aset("ns", "k", b"v", 60)
    replies = await asyncio.gather(*(backend.aget("ns", "k") for _ in range(100)))
    assert replies == [b"v"] * 100
    assert len(backend.wire().idle) == module._MAX_IDLE


@pytest.mark.parametrize("ttl", [0, -1.0, math.inf, math.nan, True, "60"])
async def test_a_bad_ttl_is_invalid_input(backend: RedisBackend, ttl: object) -> None:
    with pytest.raises(InvalidInput):
        backend.set("ns", "k", b"v", ttl)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await backend.aset("ns", "k", b"v", ttl)  # type: ignore[arg-type]


async def test_a_cache_puts_a_remote_backend_behind_a_breaker(recorder: Recorder) -> None:
    backend = RedisBackend(parse_redis_url(refused_url()))
    cache = Cache("guarded", backend=backend, ttl=60, listeners=[recorder])
    assert isinstance(cache.backend, GuardedBackend)
    assert cache.backend.inner is backend
    assert cache.backend.breaker.name == "cache-backend:redis"
    for n in range(8):
        assert await cache.get_or_load("k", _value(n)) == n
    # The breaker opened on the refusals and told the cache's listeners.
    assert any(isinstance(e, BreakerTransitioned) and e.state == "open" for e in recorder.events)
    assert any("CircuitOpen" in e.error for e in recorder.of(BackendFailure))
    mine = CircuitBreaker("mine", failure_on=BackendUnavailable)
    assert Cache("b", backend=backend, guard=mine).backend.breaker is mine  # type: ignore[union-attr]
    already = GuardedBackend(backend)
    assert Cache("c", backend=already).backend is already
    assert isinstance(Cache("d").backend, MemoryBackend)  # nothing to guard in memory
    with pytest.raises(ConfigurationError, match="breaker"):
        Cache("e", backend=backend, guard="yes")  # type: ignore[arg-type]
    await backend.aclose()
