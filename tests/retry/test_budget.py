"""RetryBudget: ratio of first tries, a floor per second, tokens that expire, thread safety."""

from __future__ import annotations

import threading

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.retry import RetryBudget


def spend(budget: RetryBudget) -> int:
    """Withdraw until refused; how many were granted."""
    granted = 0
    while budget.try_withdraw():
        granted += 1
    return granted


def test_ratio_of_first_tries_without_floor(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_second=0, clock=clock)
    assert not budget.try_withdraw()  # nothing deposited, no floor
    for _ in range(100):
        budget.deposit()
    assert budget.balance == pytest.approx(20.0)
    assert spend(budget) == 20
    assert budget.balance == pytest.approx(0.0)


def test_the_floor_lets_a_quiet_client_retry(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_second=10, ttl=10, clock=clock)
    assert budget.reserve == 100
    assert spend(budget) == 100
    clock.advance(10.0)  # the withdrawals expire: the floor is available again
    assert spend(budget) == 100


def test_tokens_expire_after_the_ttl(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.5, min_retries_per_second=0, ttl=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    clock.advance(8.9)
    assert budget.balance == pytest.approx(5.0)  # still inside the window
    clock.advance(1.2)
    assert budget.balance == 0.0  # a saved surplus cannot fund a later storm
    assert not budget.try_withdraw()


def test_window_slides_slice_by_slice(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=1.0, min_retries_per_second=0, ttl=10, clock=clock)
    for second in range(10):
        budget.deposit()
        if second < 9:
            clock.advance(1.0)
    assert budget.balance == 10.0
    clock.advance(1.0)
    assert budget.balance == 9.0  # the oldest slice left
    clock.advance(1000.0)  # far ahead: everything gone, nothing crashes
    assert budget.balance == 0.0


def test_deposit_accepts_the_callers_clock_reading(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=1.0, min_retries_per_second=0, clock=clock)
    budget.deposit(clock.monotonic())
    assert budget.balance == 1.0


def test_storm_is_capped_at_ratio_plus_floor(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_second=10, ttl=10, clock=clock)
    granted = 0
    for _ in range(1000):  # every first try fails and wants every retry it can get
        budget.deposit()
        for _ in range(3):
            granted += budget.try_withdraw()
    assert granted == 0.2 * 1000 + 10 * 10


def test_thread_safe_withdrawals() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_retries_per_second=50, ttl=10, clock=clock)
    counts: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        got = spend(budget)
        with lock:
            counts.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 500  # never more than the budget, never less


def test_repr_shows_the_balance(clock: ManualClock) -> None:
    assert "balance=100.00" in repr(RetryBudget(clock=clock))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": -0.1}, "ratio must be between 0.0 and 1.0"),
        ({"ratio": 1.5}, "ratio must be between 0.0 and 1.0"),
        ({"ratio": "0.2"}, "ratio must be between 0.0 and 1.0"),
        ({"ratio": float("nan")}, "ratio must be between 0.0 and 1.0"),
        ({"min_retries_per_second": -1}, "min_retries_per_second must be >= 0"),
        ({"ttl": 0}, "ttl must be > 0"),
        ({"ttl": float("inf")}, "ttl must be finite"),
    ],
)
def test_bad_configs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
