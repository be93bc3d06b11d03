"""The pure schedule: exact waits per jitter strategy, and statistical bounds."""

from __future__ import annotations

import random
import statistics
from itertools import islice

import pytest

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.retry import JITTERS, Backoff


def draws(*values: float) -> object:
    it = iter(values)
    return lambda: next(it)


def test_defaults_are_the_seed_schedule() -> None:
    backoff = Backoff()
    assert (backoff.wait_initial, backoff.wait_multiplier, backoff.wait_max) == (1.0, 2.0, 30.0)
    assert backoff.jitter == "full"
    assert [backoff.ceiling(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert list(islice(Backoff(jitter="none").delays(), 3)) == [1.0, 2.0, 4.0]


def test_ceiling_is_capped_and_survives_overflow() -> None:
    backoff = Backoff(wait_initial=1.0, wait_multiplier=2.0, wait_max=10.0, jitter="none")
    assert [backoff.ceiling(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.ceiling(100_000) == 10.0  # 2.0 ** 99_999 overflows a float


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        ("none", [1.0, 2.0, 4.0, 8.0]),
        ("full", [0.5, 0.5, 4.0 * 0.75, 0.0]),  # ceiling * r
        ("equal", [0.5 + 0.25, 1.0 + 0.25, 2.0 + 1.5, 4.0]),  # c/2 + c/2 * r
        # min(cap, base + (3 * prev - base) * r), prev starting at base
        ("decorrelated", [1.0 + 2.0 * 0.5, 1.0 + 5.0 * 0.25, 1.0 + 5.75 * 0.75, 1.0]),
    ],
)
def test_each_strategy_exactly(jitter: str, expected: list[float]) -> None:
    backoff = Backoff(wait_max=30.0, jitter=jitter)  # type: ignore[arg-type]
    rand = draws(0.5, 0.25, 0.75, 0.0)
    previous = backoff.wait_initial
    got = []
    for retry in range(1, 5):
        previous = backoff.delay(retry, previous, rand)  # type: ignore[arg-type]
        got.append(previous)
    assert got == pytest.approx(expected)


def test_decorrelated_is_capped() -> None:
    backoff = Backoff(wait_initial=1.0, wait_max=5.0, jitter="decorrelated")
    assert backoff.delay(3, 4.0, lambda: 0.999) == 5.0


@pytest.mark.parametrize("jitter", JITTERS)
def test_a_seeded_rng_gives_a_reproducible_schedule(jitter: str) -> None:
    backoff = Backoff(jitter=jitter)  # type: ignore[arg-type]
    first = list(islice(backoff.delays(random.Random(42)), 8))
    again = list(islice(backoff.delays(random.Random(42)), 8))
    assert first == again
    if jitter != "none":
        assert first != list(islice(backoff.delays(random.Random(43)), 8))


def test_seeded_full_jitter_is_one_draw_per_wait() -> None:
    got = list(islice(Backoff().delays(random.Random(7)), 3))
    reference = random.Random(7)
    assert got == [1.0 * reference.random(), 2.0 * reference.random(), 4.0 * reference.random()]


SAMPLES = 20_000


def test_full_jitter_statistics() -> None:
    backoff = Backoff(wait_initial=1.0, wait_max=8.0, jitter="full")
    rand = random.Random(1).random
    for retry, ceiling in ((1, 1.0), (3, 4.0), (10, 8.0)):
        values = [backoff.delay(retry, 0.0, rand) for _ in range(SAMPLES)]
        assert min(values) >= 0.0
        assert max(values) <= ceiling
        assert statistics.fmean(values) == pytest.approx(ceiling / 2, rel=0.03)


def test_equal_jitter_statistics() -> None:
    backoff = Backoff(wait_initial=2.0, wait_max=30.0, jitter="equal")
    rand = random.Random(2).random
    values = [backoff.delay(2, 0.0, rand) for _ in range(SAMPLES)]  # ceiling 4
    assert min(values) >= 2.0
    assert max(values) <= 4.0
    assert statistics.fmean(values) == pytest.approx(3.0, rel=0.02)


def test_decorrelated_stays_between_base_and_cap() -> None:
    backoff = Backoff(wait_initial=0.5, wait_max=20.0, jitter="decorrelated")
    values = list(islice(backoff.delays(random.Random(3)), SAMPLES))
    assert min(values) >= 0.5
    assert max(values) <= 20.0
    assert max(values) == 20.0  # the walk reaches the cap


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wait_initial": -1.0}, "wait_initial must be >= 0"),
        ({"wait_max": -0.5}, "wait_max must be >= 0"),
        ({"wait_initial": float("nan")}, "wait_initial must be finite"),
        ({"wait_max": float("inf")}, "wait_max must be finite"),
        ({"wait_initial": "1"}, "wait_initial must be a number"),
        ({"wait_initial": True}, "wait_initial must be a number"),
        ({"wait_multiplier": 0.5}, "wait_multiplier must be finite and >= 1"),
        ({"wait_multiplier": float("inf")}, "wait_multiplier must be finite and >= 1"),
        ({"wait_multiplier": None}, "wait_multiplier must be a number"),
        ({"wait_initial": 10.0, "wait_max": 5.0}, r"wait_max \(5.0 s\) must be >= wait_initial"),
        ({"jitter": "random"}, "jitter='random' is not one of"),
    ],
)
def test_bad_configs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_zero_waits_are_allowed() -> None:
    assert list(islice(Backoff(wait_initial=0.0, wait_max=0.0).delays(), 3)) == [0.0] * 3
