from __future__ import annotations

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway.token_cache import TokenCache


def _cache(**kwargs: object) -> tuple[TokenCache[str], ManualClock]:
    clock = ManualClock()
    return TokenCache(clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_an_entry_lives_until_the_token_expires_exactly() -> None:
    cache, clock = _cache(max_age=600)
    cache.put("t", "claims", clock.time() + 30)
    clock.advance(29.999)
    assert cache.get("t") == "claims"
    clock.advance(0.001)  # now == exp: the token is no longer valid
    assert cache.get("t") is None
    assert len(cache) == 0


def test_an_entry_never_outlives_max_age() -> None:
    cache, clock = _cache(max_age=60)
    cache.put("t", "claims", clock.time() + 3600)
    cache.put("no-exp", "claims", None)
    clock.advance(59.5)
    assert cache.get("t") == "claims"
    assert cache.get("no-exp") == "claims"
    clock.advance(0.5)
    assert cache.get("t") is None
    assert cache.get("no-exp") is None


@pytest.mark.parametrize("offset", [0.0, -1.0, float("nan")])
def test_an_expired_token_is_not_stored(offset: float) -> None:
    cache, clock = _cache()
    cache.put("t", "claims", clock.time() + offset)
    assert len(cache) == 0
    assert cache.get("t") is None


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    cache, clock = _cache(max_entries=3)
    for token in "abc":
        cache.put(token, token.upper(), clock.time() + 60)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("d", "D", clock.time() + 60)
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(token) for token in "acd"] == ["A", "C", "D"]
    for index in range(100):
        cache.put(f"x{index}", "X", clock.time() + 60)
    assert len(cache) == 3


def test_a_put_replaces_the_entry_and_its_deadline() -> None:
    cache, clock = _cache()
    cache.put("t", "old", clock.time() + 10)
    cache.put("t", "new", clock.time() + 20)
    clock.advance(15)
    assert cache.get("t") == "new"


def test_discard_and_clear() -> None:
    cache, clock = _cache()
    cache.put("a", "A", clock.time() + 10)
    cache.put("b", "B", clock.time() + 10)
    cache.discard("a")
    cache.discard("missing")
    assert cache.get("a") is None
    assert cache.get("b") == "B"
    cache.clear()
    assert len(cache) == 0


def test_the_key_is_the_whole_token() -> None:
    cache, clock = _cache()
    cache.put("h.p.sig", "claims", clock.time() + 10)
    assert cache.get("h.P.sig") is None
    assert cache.get("sig") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_entries": 0},
        {"max_entries": True},
        {"max_entries": 1.5},
        {"max_age": 0},
        {"max_age": -1},
        {"max_age": float("inf")},
        {"max_age": "60"},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        TokenCache(**kwargs)  # type: ignore[arg-type]


def test_the_limits_are_visible() -> None:
    cache: TokenCache[int] = TokenCache(max_entries=10, max_age=5)
    assert (cache.max_entries, cache.max_age) == (10, 5.0)
