"""Each Lua algorithm against its pure Python twin in ``algorithms.py``, on a real Redis.

Random states (including ones the algorithms never produce), times up to 2**51 us, rates,
costs (0 included: a status query) and time units (the scripts can count in units of 10**k
us, as the backend does for very large sliding windows: the twin is then the same function
on times in units, its waits converted back to microseconds). The script must return the
same integers and store exactly the new state when it allows, nothing when it denies. Then
whole random traffic runs through the memory and Redis backends side by side (decide, peek,
all-or-nothing).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sysdesign_kit.backends.redis import Script
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.ratelimit import MemoryBackend, RateLimiter, hit_all_sync
from sysdesign_kit.ratelimit.algorithms import fixed_window, gcra, sliding_window
from sysdesign_kit.ratelimit.redis import DECIDE_SCRIPT, SINGLE_SCRIPTS, RedisBackend

TWIN = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def run(
    client: redis.Redis, key: str, stored: str | None, script: Script, args: list[int | str]
) -> tuple[tuple[bool, int, int, int], bytes | None, int]:
    """Store ``stored`` (or nothing), run the script once; its answer, the value after, PTTL."""
    if stored is None:
        client.delete(key)
    else:
        client.set(key, stored)
    reply = script.call(client, [key], args)
    a, r, s, t = (int(v) for v in reply.split())
    after: bytes | None = client.get(key)  # type: ignore[assignment]
    return (a == 1, r, s, t), after, client.pttl(key)


def check(
    client: redis.Redis,
    key: str,
    stored: str | None,
    args: tuple[int, str, int, int, int, int],
    charged: tuple[bool, int, int, int],
    new_state: str,
    peeked: tuple[bool, int, int, int],
) -> None:
    """Both scripts that decide, then a peek, against the pure twin's answers.

    ``args`` are (now_us, code, p, q, cost, unit). The single-decision script of the code
    takes (now_us, p, q, cost) and the unit unless it is 1; the script with every algorithm
    takes (mode, now_us, code, p, q, cost, unit).
    """
    now, code, p, q, cost, unit = args
    single = SINGLE_SCRIPTS[code]
    for raw, after, ttl in (
        run(client, key, stored, single, [now, p, q, cost, *([unit] if unit > 1 else [])]),
        run(client, key, stored, DECIDE_SCRIPT, ["b", *args]),
    ):
        assert raw == charged
        if charged[0] and cost:
            expires_ms = -(-charged[2] // 1000)
            if expires_ms > 1000:
                assert after == new_state.encode()
                assert expires_ms - 1000 < ttl <= expires_ms
            else:  # may be gone already
                assert after in (new_state.encode(), None)
                assert ttl <= expires_ms
        else:
            assert after == (None if stored is None else stored.encode())
    assert run(client, key, stored, DECIDE_SCRIPT, ["p", now, code, p, q, 1, unit])[0] == peeked


@st.composite
def units(draw: st.DrawFn) -> tuple[int, int]:
    """A time unit in microseconds (mostly 1) and how far into its current unit ``now`` is."""
    unit = draw(st.sampled_from([1, 1, 1, 10, 100, 1000, 10**6]))
    return unit, draw(st.integers(0, unit - 1))


def in_us(
    unit: int, into: int, allowed: bool, remaining: int, reset: int, retry: int
) -> tuple[bool, int, int, int]:
    """A twin's answer in units as the scripts give it: reset and retry in microseconds
    from ``now``, to where their unit starts."""
    if reset > 0:
        reset = reset * unit - into
    if retry > 0:
        retry = retry * unit - into
    return allowed, remaining, reset, retry


@st.composite
def near_multiples(draw: st.DrawFn) -> tuple[int, int]:
    """(a, b) with |a| < 2**53 and a next to a multiple of b: where a rounded quotient would
    land on the wrong side of an integer."""
    b = draw(st.integers(1, 2**53 - 1) | st.integers(1, 2**20))
    q = draw(st.integers(-(2**53 // b), 2**53 // b))
    a = q * b + draw(st.sampled_from([-1, 0, 1, b - 1, -b + 1]))
    return min(max(a, 1 - 2**53), 2**53 - 1), b


FLOOR_DIV = Script(
    "local out = {}\n"
    "for i = 1, #ARGV, 2 do\n"
    "  out[#out + 1] = string.format('%d', math.floor(ARGV[i] / ARGV[i + 1]))\n"
    "end\n"
    "return table.concat(out, ' ')",
    name="floor-div",
)


@TWIN
@given(st.lists(near_multiples(), min_size=1, max_size=50))
def test_floor_of_the_rounded_quotient_is_exact_below_2_53(
    client: redis.Redis, pairs: list[tuple[int, int]]
) -> None:
    # The scripts divide with math.floor(a / b) and no correction step (see lua/one.lua).
    assert [math.floor(a / b) for a, b in pairs] == [a // b for a, b in pairs]
    reply = FLOOR_DIV.call(client, [], [x for pair in pairs for x in pair])
    assert [int(v) for v in reply.split()] == [a // b for a, b in pairs]


Case = tuple[int, int, int, int, int, int, int, int, int]


@st.composite
def gcra_cases(draw: st.DrawFn) -> tuple[int, int, int, int, int, int, int]:
    """(tat, now, interval, burst, cost) in a time unit, then (unit, into)."""
    unit, into = draw(units())
    top = 2**51 // unit  # times in units, so that every one in microseconds is exact
    interval = min(draw(st.integers(1, 10**7) | st.integers(1, 2**31)), top - 1)
    burst = draw(st.integers(1, 50) | st.integers(1, 2**20))
    tau = interval * burst
    if tau >= top:
        tau, burst = interval, 1
    now = draw(st.integers(0, top))
    tat = draw(st.just(0) | st.integers(max(0, now - 2 * tau), now + 2 * tau))
    cost = draw(st.integers(0, burst))
    return tat, now, interval, burst, cost, unit, into


@TWIN
@given(gcra_cases())
def test_gcra_twin(
    client: redis.Redis, redis_prefix: str, case: tuple[int, int, int, int, int, int, int]
) -> None:
    tat, now, interval, burst, cost, unit, into = case
    allowed, new_tat, remaining, reset, retry = gcra(tat, now, interval, burst, cost)
    one = gcra(tat, now, interval, burst, 1)
    zero = gcra(tat, now, interval, burst, 0)
    check(
        client,
        f"{redis_prefix}:twin:{{g}}",
        str(tat) if tat else None,
        (now * unit + into, "g", interval, burst, cost, unit),
        in_us(unit, into, allowed, remaining, reset, retry),
        str(new_tat),
        in_us(unit, into, one[0], zero[2], zero[3], one[4]),
    )


@st.composite
def window_cases(draw: st.DrawFn, bound: int) -> Case:
    """(index, prev, curr, now, window, limit, cost) in a time unit, then (unit, into)."""
    unit, into = draw(units())
    limit = draw(st.integers(1, 20) | st.integers(1, 10**6))
    window = draw(st.integers(1, 10**8) | st.integers(1, 2**40))
    if limit * window >= bound:
        window = max(1, bound // (2 * limit))
    window = min(window, 2**50 // unit)
    now = draw(st.integers(0, 2**51 // unit))
    current = now // window
    index = draw(st.sampled_from([0, current, current - 1, current - 2, current + 1]))
    prev = draw(st.integers(0, limit + 2))
    curr = draw(st.integers(0, limit + 2))
    cost = draw(st.integers(0, limit))
    return max(index, 0), prev, curr, now, window, limit, cost, unit, into


@TWIN
@given(window_cases(2**52))
def test_sliding_window_twin(client: redis.Redis, redis_prefix: str, case: Case) -> None:
    index, prev, curr, now, window, limit, cost, unit, into = case
    allowed, *state, remaining, reset, retry = sliding_window(
        index, prev, curr, now, window, limit, cost
    )
    one = sliding_window(index, prev, curr, now, window, limit, 1)
    zero = sliding_window(index, prev, curr, now, window, limit, 0)
    empty = index == prev == curr == 0
    check(
        client,
        f"{redis_prefix}:twin:{{s}}",
        None if empty else f"{index}:{prev}:{curr}",
        (now * unit + into, "s", window, limit, cost, unit),
        in_us(unit, into, allowed, remaining, reset, retry),
        ":".join(map(str, state)),
        in_us(unit, into, one[0], zero[4], zero[5], one[6]),
    )


@TWIN
@given(window_cases(2**62))
def test_fixed_window_twin(client: redis.Redis, redis_prefix: str, case: Case) -> None:
    index, _, count, now, window, limit, cost, unit, into = case
    allowed, *state, remaining, reset, retry = fixed_window(index, count, now, window, limit, cost)
    one = fixed_window(index, count, now, window, limit, 1)
    zero = fixed_window(index, count, now, window, limit, 0)
    check(
        client,
        f"{redis_prefix}:twin:{{f}}",
        None if index == count == 0 else f"{index}:{count}",
        (now * unit + into, "f", window, limit, cost, unit),
        in_us(unit, into, allowed, remaining, reset, retry),
        ":".join(map(str, state)),
        in_us(unit, into, one[0], zero[3], zero[4], one[5]),
    )


@pytest.mark.parametrize(("code", "junk"), [("g", "not a number"), ("s", "1:2"), ("f", "x:y")])
def test_corrupt_state_counts_as_a_new_key(
    client: redis.Redis, redis_prefix: str, code: str, junk: str
) -> None:
    key = f"{redis_prefix}:junk:{{k}}"
    for script, args in (
        (SINGLE_SCRIPTS[code], [10**9, 10, 5, 1]),
        (DECIDE_SCRIPT, ["b", 10**9, code, 10, 5, 1, 1]),
    ):
        raw, _, _ = run(client, key, junk, script, args)
        assert raw[:2] == (True, 4)


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["hit", "peek", "all"]),
        st.sampled_from("ab"),
        st.integers(0, 3 * 1_000_000),
        st.integers(1, 3),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(STEPS)
def test_backends_agree_on_random_traffic(
    redis_url: str, redis_prefix: str, steps: list[tuple[str, str, int, int]]
) -> None:
    clock = ManualClock()
    redis_backend = RedisBackend.from_url(
        redis_url, prefix=f"{redis_prefix}:{uuid.uuid4().hex[:8]}", clock=clock, server_time=False
    )
    pairs = [
        [
            RateLimiter("3/second", backend=backend, name="tb"),
            RateLimiter("5/2s", algorithm="sliding_window", backend=backend, name="sw"),
            RateLimiter("4/second", algorithm="fixed_window", backend=backend, name="fw"),
        ]
        for backend in (MemoryBackend(clock=clock), redis_backend)
    ]
    try:
        for op, key, gap, cost in steps:
            clock.advance(gap / 1_000_000)
            answers = []
            for limiters in pairs:
                if op == "hit":
                    answers.append([limiter.sync.hit(key, cost) for limiter in limiters])
                elif op == "peek":
                    answers.append([limiter.sync.peek(key) for limiter in limiters])
                else:
                    answers.append(hit_all_sync([(limiter, key) for limiter in limiters], cost))
            memory, on_redis = ([tuple(d)[:4] for d in decisions] for decisions in answers)
            assert memory == on_redis, (op, key, gap, cost)
    finally:
        asyncio.run(redis_backend.aclose())
