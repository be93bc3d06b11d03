"""XFetch: exact decisions for given draws, the cache's decisions under a seeded RNG, a
statistical bound, and no draw (no cost) far from expiry."""

from __future__ import annotations

import math
import random

import pytest

from sysdesign_kit.cache import should_refresh_early
from sysdesign_kit.cache.xfetch import HORIZON, refresh_probability
from sysdesign_kit.clock import ManualClock
from tests.cache.conftest import Recorder, make_cache


@pytest.mark.parametrize(
    ("now", "u", "expected"),
    [
        # 10 s before expiry with delta * beta = 1: refresh iff -ln(u) >= 10, u <= e**-10
        (90.0, math.exp(-10) * 0.99, True),
        (90.0, math.exp(-10) * 1.01, False),
        # 1 s before: iff u <= e**-1
        (99.0, 0.36, True),
        (99.0, 0.37, False),
        (99.999, 0.999, True),
        (100.0, 1.0, True),  # expired: always
        (150.0, 1.0, True),
    ],
)
def test_exact_decisions(now: float, u: float, expected: bool) -> None:
    assert should_refresh_early(now, 100.0, 1.0, 1.0, u) is expected


def test_beta_and_delta_scale_eagerness() -> None:
    # 10 s before expiry and u = e**-2.5: needs delta * beta >= 4
    u = math.exp(-2.5)
    assert not should_refresh_early(90.0, 100.0, 2.0, 1.0, u)
    assert should_refresh_early(90.0, 100.0, 2.0, 2.0, u)
    assert should_refresh_early(90.0, 100.0, 4.0, 1.0, u)
    assert not should_refresh_early(99.9, 100.0, 5.0, 0.0, 1e-300)  # beta 0: never early
    assert not should_refresh_early(99.9, 100.0, 0.0, 1.0, 1e-300)  # no load time: never


def test_probability() -> None:
    assert refresh_probability(90, 100, 1, 1) == pytest.approx(math.exp(-10))
    assert refresh_probability(100, 100, 1, 1) == 1.0
    assert refresh_probability(90, 100, 0, 1) == 0.0


def test_statistical_bound() -> None:
    rng = random.Random(2015)
    n = 20_000
    for gap, delta_beta in ((0.5, 1.0), (2.0, 1.0), (3.0, 2.0)):
        hits = sum(
            should_refresh_early(100 - gap, 100, delta_beta, 1.0, 1.0 - rng.random())
            for _ in range(n)
        )
        p = math.exp(-gap / delta_beta)
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(hits - n * p) < 4 * sigma


async def test_the_cache_refreshes_exactly_when_xfetch_says(
    clock: ManualClock, recorder: Recorder
) -> None:
    cache = make_cache(clock, recorder, ttl=100, early_refresh_beta=1.0)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        clock.advance(2.0)  # the load takes 2 s: delta = 2
        return calls

    await cache.get_or_load("k", load)  # fresh until 1000 + 2 + 100 (wall: clock + offset)
    expiry = cache.clock.time() + 100  # stored when the load finished
    clock.set(1000 + 2 + 100 - 8)  # 8 s before expiry: within the horizon (2 * 30 s)
    mirror = random.Random(7)  # the cache's rng seed in make_cache
    decisions = []
    for _ in range(200):
        u = 1.0 - mirror.random()
        expected = should_refresh_early(cache.clock.time(), expiry, 2.0, 1.0, u)
        before = calls
        await cache.get_or_load("k", load)
        await cache.drain()
        decisions.append(calls > before)
        assert decisions[-1] is expected
        if expected:
            break
        clock.advance(0.03)
    assert decisions[-1] is True  # within 200 reads this close to expiry, one refreshed
    assert recorder.loaded[-1] == "refreshed"
    assert "stale" not in recorder.accessed
    assert "miss" not in recorder.accessed[1:]


async def test_no_draw_far_from_expiry(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=1000, early_refresh_beta=1.0)

    async def load() -> str:
        clock.advance(1.0)  # delta = 1: draws start 30 s before expiry
        return "v"

    await cache.get_or_load("k", load)
    state = cache.rng.getstate()
    clock.advance(1000 - HORIZON - 1)
    assert await cache.get_or_load("k", load) == "v"
    assert cache.rng.getstate() == state  # no random number was drawn
    clock.advance(2)  # now within the horizon: a draw
    await cache.get_or_load("k", load)
    assert cache.rng.getstate() != state


def test_sync_early_refresh(clock: ManualClock) -> None:
    cache = make_cache(clock, ttl=10, early_refresh_beta=1.0).sync
    calls = 0

    def load() -> int:
        nonlocal calls
        calls += 1
        clock.advance(5.0)  # a slow load: delta 5, refreshed early almost surely at the end
        return calls

    cache.get_or_load("k", load)
    clock.advance(9.99)
    assert cache.get_or_load("k", load) == 1
    assert cache.drain(timeout=5)
    assert calls == 2
