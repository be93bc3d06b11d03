"""The pure state machine: every transition, exact thresholds, open-time growth and cap."""

from __future__ import annotations

import math

import pytest

from sysdesign_kit.breaker.state import (
    NO_CALLS,
    BreakerPolicy,
    State,
    Status,
    Totals,
    acquire,
    force_closed,
    force_open,
    record,
    release,
    reset,
)

POLICY = BreakerPolicy(minimum_calls=10)


def tripped(now: float = 100.0, policy: BreakerPolicy = POLICY) -> Status:
    status = record(policy, Status(), now, 0, failed=True, totals=Totals(10, 5, 0))
    assert status.state is State.OPEN
    return status


def test_closed_admits_and_nothing_changes() -> None:
    status = Status()
    step = acquire(POLICY, status, 5.0)
    assert step == (status, True, 0.0)
    assert step.status is status
    assert record(POLICY, status, 5.0, 0, failed=False, totals=Totals(10, 9, 0)) is status


@pytest.mark.parametrize(
    ("totals", "trips"),
    [
        (Totals(9, 9, 0), False),  # below minimum_calls: the rate does not count yet
        (Totals(10, 4, 0), False),  # 40%
        (Totals(10, 5, 0), True),  # exactly 50%
        (Totals(11, 5, 0), False),  # 45%
        (Totals(100, 50, 0), True),
    ],
)
def test_trips_at_exactly_the_failure_rate_once_minimum_calls_are_in(
    totals: Totals, trips: bool
) -> None:
    status = record(POLICY, Status(), 7.0, 0, failed=True, totals=totals)
    assert (status.state is State.OPEN) is trips


def test_rates_compare_exactly_for_decimal_fractions() -> None:
    # 0.3 * 10 == 3.0000000000000004: a multiplication would miss this threshold.
    policy = BreakerPolicy(failure_rate=0.3, minimum_calls=10)
    assert policy.should_trip(Totals(10, 3, 0))
    assert not policy.should_trip(Totals(10, 2, 0))


def test_slow_call_rate_trips_on_its_own() -> None:
    policy = BreakerPolicy(minimum_calls=4, slow_call_rate=0.75)
    assert not policy.should_trip(Totals(4, 0, 2))
    assert policy.should_trip(Totals(4, 0, 3))
    status = record(policy, Status(), 1.0, 0, failed=False, slow=True, totals=Totals(4, 0, 3))
    assert status.state is State.OPEN
    # Without slow-call detection the slow count is never read.
    assert not BreakerPolicy(minimum_calls=4).should_trip(Totals(4, 0, 4))


def test_a_trip_opens_for_open_for_and_rejects_with_the_time_left() -> None:
    status = tripped(now=100.0)
    assert status == Status(State.OPEN, 1, 100.0, 130.0, trips=1)
    assert acquire(POLICY, status, 100.0) == (status, False, 30.0)
    assert acquire(POLICY, status, 129.5) == (status, False, 0.5)


def test_half_open_at_exactly_open_until_then_hands_out_the_trials() -> None:
    status = tripped(now=100.0)
    step = acquire(POLICY, status, 130.0)
    assert step.admitted
    assert step.status == Status(State.HALF_OPEN, 2, 130.0, 0.0, trips=1, trials=1)
    status = step.status
    for trials in (2, 3):
        status = acquire(POLICY, status, 131.0).status
        assert status.trials == trials
    assert acquire(POLICY, status, 131.0) == (status, False, 0.0)


def test_all_trials_passing_closes_with_a_fresh_period() -> None:
    status = acquire(POLICY, tripped(), 130.0).status
    for _ in range(2):
        status = acquire(POLICY, status, 130.0).status
    for passed in (1, 2):
        status = record(POLICY, status, 131.0, 2, failed=False)
        assert (status.state, status.passed) == (State.HALF_OPEN, passed)
    status = record(POLICY, status, 132.0, 2, failed=False)
    assert status == Status(State.CLOSED, 3, 132.0)


@pytest.mark.parametrize(("failed", "slow"), [(True, False), (False, True)])
def test_one_failed_or_slow_trial_reopens_and_counts_a_trip(failed: bool, slow: bool) -> None:
    status = acquire(POLICY, tripped(), 130.0).status
    status = record(POLICY, status, 131.0, 2, failed=failed, slow=slow)
    assert status == Status(State.OPEN, 3, 131.0, 161.0, trips=2)


def test_outcomes_of_an_earlier_period_change_nothing() -> None:
    status = acquire(POLICY, tripped(), 130.0).status  # epoch 2
    assert record(POLICY, status, 131.0, 0, failed=True) is status
    assert record(POLICY, status, 131.0, 1, failed=False) is status
    assert release(status, 1) is status
    opened = tripped()
    assert record(POLICY, opened, 101.0, 1, failed=True) is opened  # OPEN ignores results


def test_release_gives_a_trial_back() -> None:
    status = acquire(POLICY, tripped(), 130.0).status
    assert status.trials == 1
    assert release(status, 2).trials == 0
    assert release(release(status, 2), 2).trials == 0  # never below zero
    closed = Status()
    assert release(closed, 0) is closed


@pytest.mark.parametrize(
    ("growth", "cap", "expected"),
    [
        (1.0, None, [30, 30, 30, 30]),
        (2.0, None, [30, 60, 120, 240]),
        (2.0, 100.0, [30, 60, 100, 100]),
        (1.5, 50.0, [30, 45, 50, 50]),
    ],
)
def test_open_time_grows_on_repeated_trips_up_to_the_cap(
    growth: float, cap: float | None, expected: list[float]
) -> None:
    policy = BreakerPolicy(minimum_calls=10, open_for_growth=growth, open_for_max=cap)
    status = tripped(now=0.0, policy=policy)
    durations = [status.open_until - status.since]
    for _ in range(3):
        now = status.open_until
        status = acquire(policy, status, now).status
        status = record(policy, status, now, status.epoch, failed=True)
        durations.append(status.open_until - status.since)
    assert durations == expected
    assert status.trips == 4


def test_recovery_resets_the_growth() -> None:
    policy = BreakerPolicy(minimum_calls=10, half_open_calls=1, open_for_growth=2.0)
    status = tripped(now=0.0, policy=policy)
    status = acquire(policy, status, 30.0).status
    status = record(policy, status, 30.0, status.epoch, failed=True)
    assert status.open_until - status.since == 60.0
    status = acquire(policy, status, status.open_until).status
    status = record(policy, status, 90.0, status.epoch, failed=False)
    assert (status.state, status.trips) == (State.CLOSED, 0)
    status = record(policy, status, 91.0, status.epoch, failed=True, totals=Totals(10, 5, 0))
    assert status.open_until - status.since == 30.0


def test_growth_without_a_cap_saturates_instead_of_overflowing() -> None:
    policy = BreakerPolicy(open_for_growth=10.0)
    assert policy.open_duration(400) == math.inf
    assert policy.open_duration(1) == 30.0


def test_operators() -> None:
    opened = force_open(Status(epoch=4, trips=2), 10.0)
    assert opened == Status(State.OPEN, 5, 10.0, math.inf, trips=2, forced=True)
    assert acquire(POLICY, opened, 1e12) == (opened, False, math.inf)
    closed = force_closed(opened, 11.0)
    assert closed == Status(State.CLOSED, 6, 11.0, forced=True)
    assert record(POLICY, closed, 12.0, 6, failed=True, totals=Totals(100, 100, 0)) is closed
    assert reset(closed, 13.0) == Status(State.CLOSED, 7, 13.0)


def test_defaults_are_the_seed_numbers() -> None:
    policy = BreakerPolicy()
    assert (policy.failure_rate, policy.open_for, policy.half_open_calls) == (0.5, 30.0, 3)
    assert policy.minimum_calls == 20
    assert NO_CALLS == (0, 0, 0)
    assert [s.value for s in State] == ["closed", "open", "half_open"]
