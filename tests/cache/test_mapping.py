"""CacheMapping: a cache as the breaker's LastGood store."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sysdesign_kit.breaker import CircuitBreaker, LastGood
from sysdesign_kit.cache import Cache, CacheMapping, MemoryBackend
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen
from tests.cache.conftest import Recorder, make_cache


class Price(msgspec.Struct):
    amount: int
    currency: str


def test_mapping_reads_writes_and_deletes(clock: ManualClock, recorder: Recorder) -> None:
    cache = make_cache(clock, recorder, ttl=100)
    mapping = cache.as_mapping(ttl=10)
    assert isinstance(mapping, CacheMapping)
    assert "ttl=10" in repr(mapping)
    mapping["a"] = 1
    mapping[("b", 2)] = [2]
    assert mapping["a"] == 1
    assert mapping[("b", 2)] == [2]
    assert cache.sync.get(repr(("b", 2))) == [2]  # non-str keys by their repr
    assert "a" in mapping
    assert "zzz" not in mapping
    assert ["unhashable"] not in mapping
    with pytest.raises(KeyError):
        mapping["zzz"]
    del mapping["a"]
    with pytest.raises(KeyError):
        del mapping["a"]
    clock.advance(10)
    with pytest.raises(KeyError):
        mapping[("b", 2)]  # its own ttl
    with pytest.raises(TypeError, match="listed"):
        list(mapping)
    with pytest.raises(TypeError, match="counted"):
        len(mapping)
    assert recorder.accessed[:2] == ["hit", "hit"]


def test_mapping_decodes_its_value_type(clock: ManualClock) -> None:
    mapping = make_cache(clock).as_mapping(value_type=Price)
    mapping["p"] = Price(5, "EUR")
    assert mapping["p"] == Price(5, "EUR")


def test_last_good_answers_from_the_cache_when_the_breaker_opens(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    store = Cache("last-good", backend=backend, clock=clock).as_mapping(ttl=86_400)
    breaker = CircuitBreaker("catalog", failure_rate=0.5, minimum_calls=2, clock=clock)
    state: dict[str, Any] = {"down": False}

    @breaker(fallback=LastGood(store=store, key=lambda pid: f"price:{pid}"))
    def price(pid: int) -> dict[str, Any]:
        if state["down"]:
            raise ConnectionError("catalog down")
        return {"pid": pid, "amount": 10 * pid}

    assert price(1) == {"pid": 1, "amount": 10}
    assert backend.get("last-good", "price:1") is not None  # remembered in the cache
    state["down"] = True
    assert price(1) == {"pid": 1, "amount": 10}  # a failure: the last good value
    assert price(1) == {"pid": 1, "amount": 10}  # open now: still answered
    with pytest.raises(CircuitOpen):
        price(2)  # never seen: nothing to answer with, so the breaker's own error
    # Another process (another cache object on the same backend) sees the same values.
    other = Cache("last-good", backend=backend, clock=clock).as_mapping()
    assert other["price:1"] == {"pid": 1, "amount": 10}
