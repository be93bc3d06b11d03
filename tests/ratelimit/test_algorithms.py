"""The pure algorithms: exact answers, and invariants over random traffic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.ratelimit.algorithms import fixed_window, gcra, sliding_window

S = 1_000_000  # one second in microseconds


def test_gcra_burst_then_one_token_per_interval() -> None:
    tat, now, interval, burst = 0, 100 * S, S // 5, 5  # 5/second
    answers = []
    for _ in range(6):
        allowed, tat, remaining, reset, retry = gcra(tat, now, interval, burst, 1)
        answers.append((allowed, remaining, reset, retry))
    assert answers == [
        (True, 4, 200_000, 0),
        (True, 3, 400_000, 0),
        (True, 2, 600_000, 0),
        (True, 1, 800_000, 0),
        (True, 0, 1_000_000, 0),
        (False, 0, 1_000_000, 200_000),
    ]
    # Exactly at retry-after one token is back, not a microsecond earlier.
    assert gcra(tat, now + 199_999, interval, burst, 1)[0] is False
    assert gcra(tat, now + 200_000, interval, burst, 1)[:1] == (True,)
    # After reset the bucket is full again.
    allowed, _, remaining, _, _ = gcra(tat, now + 1_000_000, interval, burst, 1)
    assert (allowed, remaining) == (True, 4)


def test_gcra_cost_and_denied_cost_charges_nothing() -> None:
    now, interval, burst = 50 * S, 100_000, 10
    allowed, tat, remaining, reset, retry = gcra(0, now, interval, burst, 7)
    assert (allowed, remaining, reset, retry) == (True, 3, 700_000, 0)
    allowed, tat2, remaining, reset, retry = gcra(tat, now, interval, burst, 4)
    assert (allowed, tat2, remaining, reset, retry) == (False, tat, 3, 700_000, 100_000)


def test_gcra_burst_smaller_than_rate() -> None:
    # 100/minute with burst 2: two at once, then one per 0.6 s.
    interval = 600_000
    tat = 0
    seq = []
    for _ in range(3):
        allowed, tat, *_ = gcra(tat, 10 * S, interval, 2, 1)
        seq.append(allowed)
    assert seq == [True, True, False]


def test_sliding_window_weights_previous_window() -> None:
    window, limit = 10 * S, 10
    index = prev = curr = 0
    now = 1000 * S  # start of window 100
    for _ in range(10):
        allowed, index, prev, curr, remaining, reset, retry = sliding_window(
            index, prev, curr, now, window, limit, 1
        )
        assert allowed
    assert (remaining, reset) == (0, 20 * S)
    denied = sliding_window(index, prev, curr, now + 5 * S, window, limit, 1)
    # Only the next window can take it: 1 s into it, 10 * 9/10 = 9 weighs in, 9 + 1 <= 10.
    assert denied == (False, index, prev, curr, 0, 15 * S, 6 * S)
    # 2.5 s into the next window: 10 * 0.75 = 7.5 -> ceil 8 used, 2 left before this hit.
    allowed, index, prev, curr, remaining, reset, retry = sliding_window(
        index, prev, curr, now + 12_500_000, window, limit, 2
    )
    assert (allowed, prev, curr, remaining, retry) == (True, 10, 2, 0, 0)
    # Two windows later everything is forgotten.
    assert sliding_window(index, prev, curr, now + 30 * S, window, limit, 1)[4] == 9


def test_sliding_window_retry_within_current_window() -> None:
    window, limit = 10 * S, 10
    # previous window had 10, current has 2, at 5 s: 10 * 0.5 + 2 = 7 -> 3 left.
    answer = sliding_window(101, 10, 2, 1015 * S, window, limit, 4)
    allowed, _, _, _, remaining, _, retry = answer
    assert (allowed, remaining) == (False, 3)
    # Needs 10 * (10 - e)/10 <= 4 -> e >= 6 s: retry 1 s.
    assert retry == 1 * S
    assert sliding_window(101, 10, 2, 1016 * S, window, limit, 4)[0] is True
    assert sliding_window(101, 10, 2, 1016 * S - 1, window, limit, 4)[0] is False


def test_fixed_window_sequence() -> None:
    window, limit = 60 * S, 3
    index = count = 0
    now = 600 * S + 15 * S
    seq = []
    for _ in range(4):
        allowed, index, count, remaining, reset, retry = fixed_window(
            index, count, now, window, limit, 1
        )
        seq.append((allowed, remaining, reset, retry))
    assert seq == [
        (True, 2, 45 * S, 0),
        (True, 1, 45 * S, 0),
        (True, 0, 45 * S, 0),
        (False, 0, 45 * S, 45 * S),
    ]
    assert fixed_window(index, count, 660 * S, window, limit, 1)[:4] == (True, 11, 1, 2)


# -- invariants over random traffic --------------------------------------------------

arrivals = st.lists(st.tuples(st.integers(0, 3 * S), st.integers(1, 4)), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(arrivals, st.integers(1, 20), st.integers(1, 10 * S))
def test_gcra_never_admits_more_than_burst_plus_refill(
    gaps: list[tuple[int, int]], burst: int, period: int
) -> None:
    interval = max(1, period // burst)
    tat, now, admitted, start = 0, 10_000 * S, 0, 10_000 * S
    for gap, cost in gaps:
        now += gap
        cost = min(cost, burst)
        allowed, new_tat, remaining, _, retry = gcra(tat, now, interval, burst, cost)
        assert 0 <= remaining <= burst
        if allowed:
            admitted += cost
            tat = new_tat
            assert retry == 0
        else:
            assert new_tat == tat
            assert retry > 0
            # Retrying exactly at retry-after succeeds; a microsecond earlier does not.
            assert gcra(tat, now + retry, interval, burst, cost)[0]
            assert not gcra(tat, now + retry - 1, interval, burst, cost)[0]
        # Token bucket bound: burst up front plus one token per interval since the start.
        assert admitted <= burst + (now - start) // interval


@settings(max_examples=200, deadline=None)
@given(arrivals, st.integers(1, 20), st.integers(1, 10 * S))
def test_fixed_window_never_exceeds_limit_per_window(
    gaps: list[tuple[int, int]], limit: int, window: int
) -> None:
    index = count = 0
    now = 10_000 * S
    per_window: dict[int, int] = {}
    for gap, cost in gaps:
        now += gap
        cost = min(cost, limit)
        allowed, index, new_count, remaining, reset, retry = fixed_window(
            index, count, now, window, limit, cost
        )
        if allowed:
            per_window[now // window] = per_window.get(now // window, 0) + cost
        else:
            assert retry == reset > 0
        count = new_count
        assert remaining == limit - count
    assert all(v <= limit for v in per_window.values())


@settings(max_examples=300, deadline=None)
@given(arrivals, st.integers(1, 20), st.integers(1, 10 * S))
def test_sliding_window_estimate_bounded_and_retry_exact(
    gaps: list[tuple[int, int]], limit: int, window: int
) -> None:
    index = prev = curr = 0
    now = 10_000 * S
    for gap, cost in gaps:
        now += gap
        cost = min(cost, limit)
        allowed, n_index, n_prev, n_curr, remaining, _, retry = sliding_window(
            index, prev, curr, now, window, limit, cost
        )
        elapsed = now - n_index * window
        # The weighted estimate after the call never exceeds the limit.
        assert n_prev * (window - elapsed) + n_curr * window <= limit * window or not allowed
        assert 0 <= remaining <= limit
        if not allowed:
            assert retry > 0
            later = sliding_window(n_index, n_prev, n_curr, now + retry, window, limit, cost)
            assert later[0], "allowed exactly at retry-after"
            sooner = sliding_window(n_index, n_prev, n_curr, now + retry - 1, window, limit, cost)
            assert not sooner[0], "not a microsecond before"
        index, prev, curr = n_index, n_prev, n_curr


def test_cost_zero_reports_status_without_changing_state() -> None:
    now = 1000 * S
    assert gcra(0, now, 100_000, 10, 0) == (True, now, 10, 0, 0)
    assert gcra(now + 300_000, now, 100_000, 10, 0) == (True, now + 300_000, 7, 300_000, 0)
    assert sliding_window(0, 0, 0, now, 10 * S, 5, 0) == (True, 100, 0, 0, 5, 0, 0)
    assert sliding_window(99, 0, 4, now, 10 * S, 5, 0) == (True, 100, 4, 0, 1, 10 * S, 0)
    assert sliding_window(100, 4, 1, now, 10 * S, 5, 0) == (True, 100, 4, 1, 0, 20 * S, 0)
    assert fixed_window(0, 0, now, 60 * S, 5, 0) == (True, 16, 0, 5, 0, 0)
    assert fixed_window(16, 2, now, 60 * S, 5, 0) == (True, 16, 2, 3, 20 * S, 0)
