"""``@cached``: sync and async, keys and tags from templates, typed values, overrides."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

import sysdesign_kit.cache.decorator as decorator_module
from sysdesign_kit.cache import Cache, MemoryBackend, cached, default_cache
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from tests.cache.conftest import Recorder, make_cache


class Product(msgspec.Struct):
    id: int
    name: str


async def test_async_function(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder)
    calls: list[int] = []

    @cache.cached(key="product:{product_id}", ttl=60)
    async def get_product(product_id: int, verbose: bool = False) -> Product:
        """Fetch a product."""
        calls.append(product_id)
        return Product(product_id, f"p{product_id}")

    assert await get_product(1) == Product(1, "p1")
    hit = await get_product(product_id=1, verbose=True)  # same key: verbose is not in it
    assert hit == Product(1, "p1")
    assert isinstance(hit, Product)  # decoded by the return annotation
    assert await get_product(2) == Product(2, "p2")
    assert calls == [1, 2]
    assert recorder.accessed == ["miss", "hit", "miss"]
    assert get_product.__name__ == "get_product"
    assert get_product.__doc__ == "Fetch a product."
    assert inspect.iscoroutinefunction(get_product)
    assert str(inspect.signature(get_product)) == (
        "(product_id: 'int', verbose: 'bool' = False) -> 'Product'"
    )
    clock.advance(60)
    await get_product(1)
    assert calls == [1, 2, 1]


def test_sync_function(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder)
    calls: list[int] = []

    @cache.cached(key="square:{n}")
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    assert [square(3), square(3), square(n=3), square(4)] == [9, 9, 9, 16]
    assert calls == [3, 4]
    assert not inspect.iscoroutinefunction(square)
    assert recorder.accessed == ["miss", "hit", "hit", "miss"]


async def test_default_key_uses_every_argument(clock: ManualClock) -> None:
    cache = make_cache(clock)
    calls = 0

    @cache.cached()
    async def add(a: int, b: int = 0) -> int:
        nonlocal calls
        calls += 1
        return a + b

    assert await add(1, 2) == 3
    assert await add(1, b=2) == 3
    assert await add(2, 1) == 3
    assert calls == 2


async def test_methods_use_attributes_of_self(clock: ManualClock) -> None:
    cache = make_cache(clock)

    @dataclass
    class Repo:
        tenant: str
        loads: int = 0

        @cache.cached(key="{self.tenant}:item:{item_id}")
        async def item(self, item_id: int) -> str:
            self.loads += 1
            return f"{self.tenant}/{item_id}"

    a, b = Repo("a"), Repo("b")
    assert [await a.item(1), await a.item(1), await b.item(1)] == ["a/1", "a/1", "b/1"]
    assert (a.loads, b.loads) == (1, 1)


async def test_tags_from_templates(clock: ManualClock) -> None:
    cache = make_cache(clock)
    calls = 0

    @cache.cached(key="product:{pid}:{lang}", tags=["product:{pid}"])
    async def page(pid: int, lang: str) -> str:
        nonlocal calls
        calls += 1
        return f"{pid}-{lang}"

    await page(1, "en")
    await page(1, "fr")
    await page(2, "en")
    await cache.invalidate_tags("product:1")
    await page(1, "en")
    await page(1, "fr")
    await page(2, "en")
    assert calls == 5


def test_sync_tags_from_a_callable(clock: ManualClock) -> None:
    cache = make_cache(clock)
    calls = 0

    @cache.cached(key="u:{uid}", tags=lambda uid: [f"user:{uid}"])
    def user(uid: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"uid": uid}

    user(1)
    cache.sync.invalidate_tags("user:1")
    user(1)
    assert calls == 2


async def test_overrides(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=100)
    results: list[Any] = [None]

    @cache.cached(key="a", ttl=10, negative_ttl=5, stale_if_error=30)
    async def lookup() -> Any:
        value = results.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    assert await lookup() is None  # cached as "not found" for 5 s
    clock.advance(4)
    assert await lookup() is None
    clock.advance(1)
    results += [{"x": 1}, ConnectionError("down")]
    assert await lookup() == {"x": 1}
    clock.advance(20)  # 10 s fresh, then within the 30 s stale-if-error window
    assert await lookup() == {"x": 1}
    assert results == []


async def test_forward_reference_return_type_resolved_on_first_use(clock: ManualClock) -> None:
    cache = make_cache(clock)

    @cache.cached(key="later")
    async def later() -> Later:  # noqa: F821 - defined below on purpose
        return Later(1)  # noqa: F821

    globals()["Later"] = _Later  # what defining it later in the module amounts to
    try:
        assert await later() == _Later(1)
        hit = await later()
        assert isinstance(hit, _Later)
    finally:
        del globals()["Later"]


class _Later(msgspec.Struct):
    n: int


async def test_unresolvable_return_type_is_a_configuration_error(clock: ManualClock) -> None:
    cache = make_cache(clock)

    @cache.cached(key="never")
    async def never() -> Undefined:  # type: ignore[name-defined]  # noqa: F821
        return 1

    with pytest.raises(ConfigurationError, match="value_type="):
        await never()


async def test_value_type_override(clock: ManualClock) -> None:
    cache = make_cache(clock)

    @cache.cached(key="raw", value_type=Any)
    async def raw() -> Product:
        return Product(1, "p")

    await raw()
    assert await raw() == {"id": 1, "name": "p"}  # decoded as plain data, as asked


async def test_share_objects_through_the_decorator(clock: ManualClock) -> None:
    cache = make_cache(clock, share_objects=True)
    made: list[dict[str, int]] = []

    @cache.cached(key="obj")
    async def obj() -> dict[str, int]:
        made.append({"n": len(made)})
        return made[-1]

    @cache.cached(key="sobj")
    def sobj() -> dict[str, int]:
        return {"n": 1}

    first = await obj()
    assert await obj() is first
    assert sobj() is sobj()


async def test_long_keys_through_the_decorator(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    cache = make_cache(clock, backend=backend, max_key_length=64)

    @cache.cached(key="{text}")
    async def echo(text: str) -> str:
        return text

    @cache.cached(key="s{text}")
    def secho(text: str) -> str:
        return text

    long = "x" * 500
    assert await echo(long) == long
    assert await echo(long) == long
    assert secho(long) == secho(long) == long
    assert {len(key) for _, key in backend._data} == {64}


async def test_early_refresh_through_the_decorator(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=10, early_refresh_beta=1.0)
    calls = 0

    @cache.cached(key="slow")
    async def slow() -> int:
        nonlocal calls
        calls += 1
        clock.advance(5)  # delta 5 s: near expiry a refresh is almost certain
        return calls

    assert await slow() == 1
    clock.advance(9.99)
    assert await slow() == 1  # served, refreshed in the background
    await cache.drain()
    assert calls == 2
    clock.advance(0.5)
    assert await slow() == 2


def test_default_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decorator_module, "_DEFAULT", None)
    calls = 0

    @cached(key="default-test:{n}")
    def f(n: int) -> int:
        nonlocal calls
        calls += 1
        return n

    assert f(1) == f(1) == 1
    assert calls == 1
    assert default_cache() is default_cache()
    assert default_cache().name == "default"
    assert default_cache().policy.ttl == 3600.0


def test_refused_at_decoration(clock: ManualClock) -> None:
    cache = make_cache(clock)

    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    for func in (gen, agen):
        with pytest.raises(ConfigurationError, match="generator"):
            cache.cached()(func)
    with pytest.raises(ConfigurationError, match="expected a function"):
        cached(cache=cache)(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cache= must be a Cache"):
        cached(cache="memory://")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl"):
        cache.cached(ttl=-1)(lambda: 1)
    with pytest.raises(ConfigurationError, match="not a parameter"):
        cache.cached(key="{nope}")(lambda x: x)


def test_decorating_with_the_module_function_and_a_cache(clock: ManualClock) -> None:
    cache = Cache("explicit", backend=MemoryBackend(clock=clock), clock=clock)

    @cached(cache=cache, key="k{x}")
    def f(x: int) -> int:
        return x

    f(1)
    assert cache.sync.get("k1") == 1


class RemoteLike(MemoryBackend):
    """A memory backend that says it does I/O: the async cache awaits its coroutines."""

    local = False


async def test_a_backend_with_io_goes_through_its_coroutines(
    clock: ManualClock, recorder: Recorder
) -> None:
    backend = RemoteLike(clock=clock)
    cache = make_cache(clock, recorder, backend=backend)
    calls = 0

    @cache.cached(key="r:{n}")
    async def remote(n: int) -> int:
        nonlocal calls
        calls += 1
        return n

    assert [await remote(1), await remote(1)] == [1, 1]
    assert calls == 1
    assert await cache.get("r:1") == 1
    backend.set("test", "r:2", b"\xc1", 60)  # corrupted: a reported miss, then loaded
    assert await remote(2) == 2
    assert recorder.accessed == ["miss", "hit", "hit", "miss"]


async def test_corrupted_bytes_through_the_async_decorator(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    cache = make_cache(clock, backend=backend)

    @cache.cached(key="k")
    async def load() -> int:
        return 5

    backend.set("test", "k", b"\xc1", 60)
    assert await load() == 5
    assert await load() == 5
