"""Never executed: mypy --strict checks this file as a user's code would be written.

Decorated functions keep their exact signatures (the ``type: ignore`` lines would be reported
as unused if ``@cached`` erased them); if the public cache API changes in a way that breaks
users, this stops type-checking.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from sysdesign_kit import ManualClock
from sysdesign_kit.breaker import CircuitBreaker, LastGood
from sysdesign_kit.cache import (
    PRODUCT_TTL,
    Cache,
    CacheBackend,
    CacheMapping,
    CachePolicy,
    MemoryBackend,
    SyncCache,
    Unserializable,
    ValueTooLarge,
    cached,
    default_cache,
    fit_key,
    should_refresh_early,
)
from sysdesign_kit.events import Event


class Product(msgspec.Struct):
    id: int
    name: str


events: list[Event] = []
clock = ManualClock()
backend: CacheBackend = MemoryBackend(max_entries=1_000, max_bytes=1 << 20, clock=clock)
products = Cache(
    "products",
    backend=backend,
    ttl=PRODUCT_TTL,
    stale_while_revalidate=60.0,
    stale_if_error=600.0,
    negative_ttl=30.0,
    early_refresh_beta=1.0,
    serializer="msgpack",
    value_type=Product,
    max_value_bytes=64_000,
    clock=clock,
    rng=random.Random(5),
    listeners=[events.append],
)


@products.cached(key="product:{product_id}", tags=["product:{product_id}"])
async def get_product(product_id: int, *, lang: str = "en") -> Product | None:
    return Product(product_id, lang)


@cached(ttl=300, key=lambda user_id: f"user:{user_id}")
def get_user(user_id: int) -> dict[str, Any]:
    return {"id": user_id}


breaker = CircuitBreaker("catalog")
remembered: CacheMapping = products.as_mapping(ttl=86_400)


@breaker(fallback=LastGood(store=remembered))
def price(product_id: int) -> int:
    return product_id


async def load_price() -> int:
    return 3


async def use() -> None:
    product: Product | None = await get_product(1, lang="fr")
    await get_product("one")  # type: ignore[arg-type]
    user: dict[str, Any] = get_user(7)
    get_user()  # type: ignore[call-arg]
    amount: int = await products.get_or_load("price:1", load_price, ttl=60.0, tags=["p"])
    twin: SyncCache = products.sync
    blocking: int = twin.get_or_load("price:2", lambda: 4)
    found: Any = await products.get("product:1", None)
    await products.set("product:2", Product(2, "b"), ttl=10.0, tags=("product:2",))
    gone: bool = await products.delete("product:2")
    await products.invalidate_tags("product:1", "product:2")
    version: int = await products.invalidate_all()
    await products.drain()
    drained: bool = twin.drain(timeout=1.0)
    policy: CachePolicy = products.policy.override(ttl=5.0)
    key: str = fit_key("x" * 300, 250)
    early: bool = should_refresh_early(1.0, 2.0, 0.1, 1.0, 0.5)
    default: Cache = default_cache()
    errors: tuple[type[Exception], ...] = (Unserializable, ValueTooLarge)
    print(product, user, amount, blocking, found, gone, version, drained, policy, key, early)
    print(default, errors, price(1))
