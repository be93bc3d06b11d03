"""Invariants over many generated cases: waits stay in their bounds, budgets never overspend."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.retry import JITTERS, Backoff, RetryBudget

waits = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    initial=waits,
    extra=waits,
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    jitter=st.sampled_from(JITTERS),
    seed=st.integers(0, 2**32),
    retries=st.integers(1, 60),
)
def test_every_wait_stays_within_its_bounds(
    initial: float, extra: float, multiplier: float, jitter: str, seed: int, retries: int
) -> None:
    backoff = Backoff(initial, multiplier, initial + extra, jitter)  # type: ignore[arg-type]
    draw = random.Random(seed).random
    previous = initial
    for retry in range(1, retries + 1):
        ceiling = backoff.ceiling(retry)
        delay = backoff.delay(retry, previous, draw)
        assert 0.0 <= delay <= backoff.wait_max
        assert ceiling <= backoff.wait_max
        if jitter == "none":
            assert delay == ceiling
        elif jitter == "full":
            assert delay <= ceiling
        elif jitter == "equal":
            assert ceiling / 2 <= delay <= ceiling
        else:
            assert backoff.wait_initial <= delay <= max(3 * previous, backoff.wait_initial)
        previous = delay


@settings(max_examples=200, deadline=None)
@given(
    ratio=st.floats(min_value=0.0, max_value=1.0),
    floor=st.floats(min_value=0.0, max_value=20.0),
    steps=st.lists(
        st.tuples(st.sampled_from(["deposit", "withdraw", "advance"]), st.floats(0.0, 4.0)),
        max_size=300,
    ),
)
def test_withdrawals_in_any_window_never_exceed_ratio_plus_reserve(
    ratio: float, floor: float, steps: list[tuple[str, float]]
) -> None:
    clock = ManualClock()
    ttl = 10.0
    budget = RetryBudget(ratio=ratio, min_retries_per_second=floor, ttl=ttl, clock=clock)
    deposits: list[float] = []
    granted: list[float] = []
    for action, amount in steps:
        now = clock.monotonic()
        if action == "deposit":
            budget.deposit()
            deposits.append(now)
        elif action == "withdraw":
            if budget.try_withdraw():
                granted.append(now)
        else:
            clock.advance(amount)
        # A deposit funds withdrawals for at most ttl seconds, so what was granted in the
        # last ttl seconds was funded by deposits of the last 2 * ttl seconds (a grant at
        # the window's start may spend a deposit ttl older), plus the reserve.
        now = clock.monotonic()
        recent = [t for t in granted if t > now - ttl]
        funded = [t for t in deposits if t >= now - 2 * ttl]
        assert len(recent) <= ratio * len(funded) + floor * ttl + 1e-9
