"""The memory backend: same answers as the pure algorithms, and memory that stays bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.ratelimit import MemoryBackend, RateLimiter
from sysdesign_kit.ratelimit.algorithms import fixed_window, gcra, sliding_window
from sysdesign_kit.ratelimit.rate import parse_rate

S = 1_000_000


class Reference:
    """The pure algorithms over a dict that never forgets: what the backend must match."""

    def __init__(self, algorithm: str, text: str) -> None:
        self.algorithm = algorithm
        self.rate = parse_rate(text)
        self.state: dict[str, tuple[int, ...]] = {}

    def hit(self, key: str, now: int, cost: int) -> tuple[bool, int, int, int]:
        rate = self.rate
        if self.algorithm == "token_bucket":
            (tat,) = self.state.get(key, (0,))
            allowed, tat, remaining, reset, retry = gcra(
                tat, now, rate.interval_us, rate.burst, cost
            )
            new: tuple[int, ...] = (tat,)
        elif self.algorithm == "sliding_window":
            allowed, *state, remaining, reset, retry = sliding_window(
                *self.state.get(key, (0, 0, 0)), now, rate.period_us, rate.limit, cost
            )
            new = tuple(state)
        else:
            allowed, *state, remaining, reset, retry = fixed_window(
                *self.state.get(key, (0, 0)), now, rate.period_us, rate.limit, cost
            )
            new = tuple(state)
        if allowed:
            self.state[key] = new
        return allowed, remaining, reset, retry


traffic = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 4 * S), st.integers(1, 3)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["token_bucket", "sliding_window", "fixed_window"]),
    st.sampled_from(["3/second", "5/2s", "10/minute burst 4", "7/0.5s"]),
    traffic,
)
def test_forgetting_changes_no_answer(
    algorithm: str, rate: str, steps: list[tuple[str, int, int]]
) -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate, algorithm=algorithm, clock=clock)  # type: ignore[arg-type]
    boolean = RateLimiter(rate, algorithm=algorithm, clock=clock)  # type: ignore[arg-type]
    reference = Reference(algorithm, rate)
    for key, gap, cost in steps:
        clock.advance(gap / S)
        cost = min(cost, limiter.capacity)
        expected = reference.hit(key, clock.monotonic_ns() // 1000, cost)
        assert tuple(limiter.sync.hit(key, cost))[:4] == expected
        assert boolean.sync.try_acquire(key, cost) is expected[0]


def test_one_off_keys_leave_nothing_behind() -> None:
    clock = ManualClock()
    backend = MemoryBackend(clock=clock)
    limiters = [
        RateLimiter("10/second", algorithm=algorithm, backend=backend)  # type: ignore[arg-type]
        for algorithm in ("token_bucket", "sliding_window", "fixed_window")
    ]
    for i in range(50_000):
        for limiter in limiters:
            limiter.sync.hit(f"client-{i}")
    assert len(backend) == 150_000
    # Two recovery horizons later one call sweeps the lot, without scanning keys.
    clock.advance(4.0)
    for limiter in limiters:
        limiter.sync.hit("late")
    assert len(backend) == 3


def test_keys_that_stay_busy_are_kept_across_rotations() -> None:
    clock = ManualClock()
    limiter = RateLimiter("2/second", clock=clock)
    for _ in range(10):
        assert limiter.sync.hit("busy").allowed
        assert limiter.sync.hit("busy").allowed
        assert not limiter.sync.hit("busy").allowed
        clock.advance(1.0)


def test_shared_backend_keeps_policies_apart() -> None:
    backend = MemoryBackend(clock=ManualClock())
    a = RateLimiter("1/minute", name="a", backend=backend)
    b = RateLimiter("1/minute", name="b", backend=backend)
    assert a.sync.hit("k").allowed
    assert b.sync.hit("k").allowed
    assert not a.sync.hit("k").allowed
