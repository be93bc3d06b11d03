"""Cache behaviour under a manual clock: TTL, stale-while-revalidate, stale-if-error,
negative caching, None, invalidation by key, tag and namespace version, events, settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from sysdesign_kit.cache import PRODUCT_TTL, Cache, CachePolicy, MemoryBackend
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError, InvalidKey
from sysdesign_kit.events import BackendFailure, CacheAccessed, CacheLoaded
from tests.cache.conftest import Recorder, make_cache


class Loader:
    """Counts calls; returns ``value`` or raises ``error`` (both changeable)."""

    def __init__(self, value: Any = "v1") -> None:
        self.value = value
        self.error: Exception | None = None
        self.calls = 0

    async def __call__(self) -> Any:
        return self.sync()

    def sync(self) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value


def test_defaults_are_the_seeds_product_cache() -> None:
    cache = Cache()
    assert cache.policy == CachePolicy(ttl=PRODUCT_TTL)
    assert PRODUCT_TTL == 3600.0
    assert cache.name == cache.namespace == "default"
    assert isinstance(cache.backend, MemoryBackend)
    assert "Cache('default'" in repr(cache)
    assert "msgpack" in repr(cache)
    assert "SyncCache(" in repr(cache.sync)


async def test_ttl_is_exact(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, ttl=10)
    load = Loader()
    assert await cache.get_or_load("k", load) == "v1"
    clock.advance(9.999)
    assert await cache.get_or_load("k", load) == "v1"
    assert load.calls == 1
    clock.advance(0.001)
    load.value = "v2"
    assert await cache.get_or_load("k", load) == "v2"
    assert load.calls == 2
    assert recorder.accessed == ["miss", "hit", "miss"]
    assert recorder.loaded == ["loaded", "loaded"]


def test_ttl_is_exact_sync(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=10).sync
    load = Loader()
    assert cache.get_or_load("k", load.sync) == "v1"
    clock.advance(9.999)
    assert cache.get("k") == "v1"
    clock.advance(0.001)
    assert cache.get("k", "gone") == "gone"


async def test_per_call_ttl(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=100)
    await cache.set("k", 1, ttl=5)
    await cache.get_or_load("j", Loader(), ttl=5)
    cache.sync.set("s", 1, ttl=5)
    assert cache.sync.get_or_load("t", Loader().sync, ttl=5) == "v1"
    clock.advance(5)
    assert [await cache.get(k) for k in "kjst"] == [None] * 4


async def test_stale_while_revalidate(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, ttl=10, stale_while_revalidate=5)
    load = Loader()
    await cache.get_or_load("k", load)
    clock.advance(12)
    load.value = "v2"
    assert await cache.get_or_load("k", load) == "v1"  # stale, served at once
    assert await cache.get_or_load("k", load) == "v1"  # one reload in flight, not two
    await cache.drain()
    assert load.calls == 2
    assert await cache.get_or_load("k", load) == "v2"
    assert recorder.accessed == ["miss", "stale", "stale", "hit"]
    assert recorder.loaded == ["loaded", "refreshed"]
    assert await cache.get("k") == "v2"
    clock.advance(10 + 5)  # past both windows: a plain miss
    load.value = "v3"
    assert await cache.get_or_load("k", load) == "v3"


def test_stale_while_revalidate_sync(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, ttl=10, stale_while_revalidate=5).sync
    load = Loader()
    cache.get_or_load("k", load.sync)
    clock.advance(12)
    load.value = "v2"
    assert cache.get_or_load("k", load.sync) == "v1"
    assert cache.drain(timeout=5)
    assert cache.get_or_load("k", load.sync) == "v2"
    assert load.calls == 2
    assert recorder.loaded == ["loaded", "refreshed"]


async def test_stale_if_error(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, ttl=10, stale_if_error=60)
    load = Loader()
    await cache.get_or_load("k", load)
    load.error = ConnectionError("down")
    clock.advance(30)
    assert await cache.get_or_load("k", load) == "v1"  # the loader failed: last good value
    assert recorder.accessed == ["miss", "miss", "stale"]
    assert recorder.loaded == ["loaded", "failed"]
    clock.advance(40)  # 70 s after the load: past the window, the error itself
    with pytest.raises(ConnectionError, match="down"):
        await cache.get_or_load("k", load)
    load.error = None
    assert await cache.get_or_load("k", load) == "v1"


def test_stale_if_error_sync(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=10, stale_if_error=60).sync
    load = Loader()
    cache.get_or_load("k", load.sync)
    load.error = ConnectionError("down")
    clock.advance(30)
    assert cache.get_or_load("k", load.sync) == "v1"
    clock.advance(40)
    with pytest.raises(ConnectionError):
        cache.get_or_load("k", load.sync)


async def test_failed_background_reload_keeps_serving(
    clock: ManualClock, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(clock, recorder, ttl=10, stale_while_revalidate=5)
    load = Loader()
    await cache.get_or_load("k", load)
    clock.advance(11)
    load.error = ConnectionError("down")
    assert await cache.get_or_load("k", load) == "v1"
    await cache.drain()
    assert "background reload of 'k' failed" in caplog.text
    assert await cache.get_or_load("k", load) == "v1"  # still stale: tries again
    await cache.drain()
    assert recorder.loaded == ["loaded", "failed", "failed"]


def test_failed_background_reload_sync(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=10, stale_while_revalidate=5, stale_if_error=5).sync
    load = Loader()
    cache.get_or_load("k", load.sync)
    clock.advance(11)
    load.error = ConnectionError("down")
    assert cache.get_or_load("k", load.sync) == "v1"
    assert cache.drain(timeout=5)
    assert load.calls == 2


async def test_none_is_not_cached_by_default(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder)
    load = Loader(None)
    assert await cache.get_or_load("k", load) is None
    assert await cache.get_or_load("k", load) is None
    assert load.calls == 2
    assert recorder.loaded == ["missing", "missing"]
    assert cache.sync.get_or_load("k", load.sync) is None
    assert load.calls == 3


async def test_negative_caching(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, ttl=100, negative_ttl=5, stale_if_error=50)
    load = Loader(None)
    assert await cache.get_or_load("k", load) is None
    clock.advance(4.999)
    assert await cache.get_or_load("k", load) is None
    assert load.calls == 1
    assert recorder.accessed == ["miss", "hit"]
    assert recorder.loaded == ["missing"]
    clock.advance(0.001)  # the negative entry has its own TTL and no stale windows
    load.value = "found"
    assert await cache.get_or_load("k", load) == "found"
    assert load.calls == 2


async def test_none_set_explicitly_is_a_value(clock: ManualClock) -> None:
    cache = make_cache(clock)
    await cache.set("k", None)
    load = Loader()
    assert await cache.get_or_load("k", load) is None
    assert load.calls == 0


async def test_get_set_delete(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder)
    assert await cache.get("k") is None
    assert await cache.get("k", 0) == 0
    await cache.set("k", [1, 2])
    assert await cache.get("k") == [1, 2]
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    cache.sync.set("k", 3)
    assert cache.sync.delete("k") is True
    assert cache.sync.get("k") is None
    assert recorder.accessed == ["miss", "miss", "hit", "miss"]


async def test_tags(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    products = make_cache(clock, backend=backend, name="products")
    pages = make_cache(clock, backend=backend, name="pages")
    await products.set("p:1", "one", tags=["product:1"])
    await products.get_or_load("p:2", Loader("two"), tags=("product:2",))
    pages.sync.set("page:1", "<p>one</p>", tags=["product:1", "page"])
    pages.sync.get_or_load("page:2", lambda: "<p>two</p>", tags="product:2")
    await products.invalidate_tags("product:1")
    assert await products.get("p:1") is None
    assert await pages.get("page:1") is None
    assert await products.get("p:2") == "two"
    pages.sync.invalidate_tags("product:2", "unused")
    assert await products.get("p:2") is None
    assert await pages.get("page:2") is None
    with pytest.raises(InvalidKey):
        await products.set("p:3", 3, tags=[""])


async def test_invalidate_all_bumps_the_namespace(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    products = make_cache(clock, backend=backend, name="products")
    users = make_cache(clock, backend=backend, name="users")
    await products.set("1", "p1")
    await users.set("1", "u1")
    assert await products.invalidate_all() == 1
    assert await products.get("1") is None
    assert await users.get("1") == "u1"
    await products.set("1", "p1 again")
    assert await products.get("1") == "p1 again"
    assert users.sync.invalidate_all() == 1
    assert users.sync.get("1") is None


async def test_same_key_in_two_caches_is_two_entries(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    a = make_cache(clock, backend=backend, name="a")
    b = make_cache(clock, backend=backend, name="b")
    await a.set("k", 1)
    await b.set("k", 2)
    assert (await a.get("k"), await b.get("k")) == (1, 2)


async def test_long_keys_are_hashed(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    cache = make_cache(clock, backend=backend, max_key_length=64)
    long_a, long_b = "k" * 100 + "a", "k" * 100 + "b"
    await cache.set(long_a, "a")
    await cache.set(long_b, "b")
    assert await cache.get(long_a) == "a"
    assert await cache.get(long_b) == "b"
    assert all(len(k) == 64 for _, k in backend._data)
    assert await cache.delete(long_a) is True


@pytest.mark.parametrize("key", ["", 42, None, b"k"])
async def test_bad_keys(clock: ManualClock, key: Any) -> None:
    cache = make_cache(clock)
    with pytest.raises(InvalidKey):
        await cache.get(key)
    with pytest.raises(InvalidKey):
        cache.sync.set(key, 1)


async def test_no_listener_no_event_and_listener_errors_are_contained(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("sink down")

    cache = make_cache(clock)
    await cache.get_or_load("k", Loader())
    cache.events.add(broken)
    assert await cache.get_or_load("k", Loader()) == "v1"
    assert "event listener" in caplog.text


async def test_event_fields(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, name="products")
    await cache.get_or_load("k", Loader())
    accessed = recorder.of(CacheAccessed)[0]
    loaded = recorder.of(CacheLoaded)[0]
    assert (accessed.component, accessed.name, accessed.outcome) == (
        "cache:products",
        "products",
        "miss",
    )
    assert (loaded.component, loaded.outcome, loaded.duration) == (
        "cache:products",
        "loaded",
        0.0,
    )


class Down:
    """A backend that is unreachable (what a Redis outage looks like to the cache)."""

    kind = "down"
    local = False

    def _fail(self) -> BackendUnavailable:
        error = BackendUnavailable("connection refused")
        error.__cause__ = ConnectionRefusedError("refused")
        return error

    def get(self, namespace: str, key: str) -> bytes | None:
        raise self._fail()

    def set(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        raise self._fail()

    def delete(self, namespace: str, key: str) -> bool:
        raise self._fail()

    def version(self, namespace: str) -> int:
        raise self._fail()

    def bump(self, namespace: str) -> int:
        raise self._fail()

    def invalidate_tags(self, tags: Sequence[str]) -> None:
        raise self._fail()

    async def aget(self, namespace: str, key: str) -> bytes | None:
        return self.get(namespace, key)

    async def aset(
        self, namespace: str, key: str, data: bytes, ttl: float, tags: Sequence[str] = ()
    ) -> None:
        self.set(namespace, key, data, ttl, tags)

    async def adelete(self, namespace: str, key: str) -> bool:
        return self.delete(namespace, key)

    async def abump(self, namespace: str) -> int:
        return self.bump(namespace)

    async def ainvalidate_tags(self, tags: Sequence[str]) -> None:
        self.invalidate_tags(tags)


async def test_an_unreachable_backend_degrades_to_loading(
    clock: ManualClock, recorder: Recorder
) -> None:
    cache = make_cache(clock, recorder, backend=Down())
    load = Loader()
    assert await cache.get_or_load("k", load) == "v1"
    assert cache.sync.get_or_load("k", load.sync) == "v1"
    assert await cache.get("k", "d") == "d"

    @cache.cached(key="k")
    async def decorated() -> str:
        return "v"

    @cache.cached(key="k")
    def decorated_sync() -> str:
        return "v"

    assert await decorated() == "v"
    assert decorated_sync() == "v"
    failures = [(f.operation, f.outcome, f.error) for f in recorder.of(BackendFailure)]
    assert failures[:2] == [
        ("get", "miss", "ConnectionRefusedError: refused"),
        ("set", "not_cached", "ConnectionRefusedError: refused"),
    ]
    with pytest.raises(BackendUnavailable):
        await cache.set("k", 1)  # an explicit write is not silently dropped


Setting = Callable[[], Any]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"ttl": "1h"}, "ttl"),
        ({"stale_while_revalidate": -1}, "stale_while_revalidate"),
        ({"stale_if_error": float("nan")}, "stale_if_error"),
        ({"negative_ttl": -5}, "negative_ttl"),
        ({"early_refresh_beta": -1}, "early_refresh_beta"),
        ({"early_refresh_beta": True}, "early_refresh_beta"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"max_value_bytes": 0}, "max_value_bytes"),
        ({"max_key_length": 10}, "max_key_length"),
        ({"serializer": "yaml"}, "serializer"),
        ({"backend": {}}, "backend"),
        ({"share_objects": True, "backend": Down()}, "share_objects"),
        ({"clock": 3}, "clock"),
        ({"rng": 3}, "rng"),
    ],
)
def test_bad_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Cache(**options)


def test_policy_override_ignores_none() -> None:
    policy = CachePolicy()
    assert policy.override(ttl=None) is policy
    assert policy.override(ttl=5).ttl == 5
    assert CachePolicy(ttl=10, stale_while_revalidate=3, stale_if_error=7).keep == 17


async def test_share_objects_hands_out_the_stored_object(clock: ManualClock) -> None:
    cache = make_cache(clock, share_objects=True, max_value_bytes=1000)
    value = {"a": [1]}
    await cache.set("k", value)
    assert await cache.get("k") is value  # the trade-off: no copy
    copying = make_cache(clock, name="copying")
    await copying.set("k", value)
    got = await copying.get("k")
    assert got == value
    assert got is not value
    with pytest.raises(Exception, match="over max_value_bytes"):
        await cache.set("big", "x" * 2000)
    unloadable: Callable[[], Awaitable[Any]] = Loader(lambda: None)
    with pytest.raises(Exception, match="cannot cache"):
        await cache.get_or_load("bad", unloadable)
