"""Sliding windows: what they hold, when time-window buckets expire, no lost calls across
threads."""

from __future__ import annotations

import threading

import pytest

from sysdesign_kit.breaker.state import Totals
from sysdesign_kit.breaker.windows import (
    FAILED,
    OK,
    SLOW,
    SLOW_FAILED,
    CountWindow,
    TimeWindow,
)
from sysdesign_kit.clock import ManualClock


def test_count_window_keeps_the_last_size_calls(clock: ManualClock) -> None:
    recorder = CountWindow(4).recorder(clock)
    assert recorder.totals(0) == Totals(0, 0, 0)
    for code in (FAILED, FAILED, SLOW, SLOW_FAILED):
        recorder.add(code, 0)
    assert recorder.totals(0) == Totals(4, 3, 2)
    recorder.ok()
    recorder.ok()  # the two FAILED fall out
    assert recorder.totals(0) == Totals(4, 1, 2)


def test_time_window_buckets_expire_exactly(clock: ManualClock) -> None:
    # 10 s in 10 buckets of 1 s; the clock starts at 1000.0 (a bucket boundary).
    window = TimeWindow(10, buckets=10)
    recorder = window.recorder(clock)
    recorder.add(FAILED, clock.monotonic_ns())
    recorder.ok()
    clock.advance(0.999)
    recorder.add(SLOW, clock.monotonic_ns())  # same bucket, [1000, 1001)
    clock.advance(0.001)
    recorder.ok()  # bucket [1001, 1002)
    assert recorder.totals(clock.monotonic_ns()) == Totals(4, 1, 1)
    clock.set(1009.999)
    assert recorder.totals(clock.monotonic_ns()) == Totals(4, 1, 1)
    clock.set(1010.0)  # the first bucket leaves the window
    assert recorder.totals(clock.monotonic_ns()) == Totals(1, 0, 0)
    clock.set(1011.0)
    assert recorder.totals(clock.monotonic_ns()) == Totals(0, 0, 0)


def test_time_window_drops_old_buckets_when_a_new_one_starts(clock: ManualClock) -> None:
    recorder = TimeWindow(3, buckets=3).recorder(clock)
    for _ in range(10):
        recorder.ok()
        clock.advance(1.0)
    recorder.ok()
    assert len(recorder._buckets) <= 4
    assert recorder.totals(clock.monotonic_ns()) == Totals(3, 0, 0)


def test_time_window_counts_a_late_record_into_its_own_bucket(clock: ManualClock) -> None:
    recorder = TimeWindow(2, buckets=2).recorder(clock)
    now = clock.monotonic_ns()
    clock.advance(1.0)
    recorder.ok()
    recorder.add(FAILED, now)  # finished a second ago
    assert recorder.totals(clock.monotonic_ns()) == Totals(2, 1, 0)


def test_window_descriptions_and_defaults() -> None:
    assert str(CountWindow()) == "last 100 calls"
    assert str(TimeWindow()) == "last 60 s in 10 buckets"
    assert TimeWindow(1.5, buckets=3).width_ns == 500_000_000
    assert not CountWindow().needs_time
    assert TimeWindow().needs_time


@pytest.mark.parametrize("window", [CountWindow(1_000_000), TimeWindow(60, buckets=4)])
def test_no_call_is_lost_when_threads_record_at_once(window: CountWindow | TimeWindow) -> None:
    clock = ManualClock()
    recorder = window.recorder(clock)
    threads, per_thread = 8, 5_000
    start = threading.Barrier(threads)
    moving = threading.Lock()  # a ManualClock is moved by one thread at a time

    def hammer(index: int) -> None:
        start.wait()
        for i in range(per_thread):
            if i % 500 == 0:
                with moving:
                    clock.advance(0.5)  # new buckets start while others record (40 s < 60 s)
            if i % 10 == index % 10:
                recorder.add(SLOW_FAILED if i % 20 == 0 else FAILED, clock.monotonic_ns())
            else:
                recorder.ok()

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    calls, failures, slow = recorder.totals(clock.monotonic_ns())
    assert calls == threads * per_thread
    assert failures == threads * per_thread // 10
    assert 0 < slow < failures
    assert OK == 0
