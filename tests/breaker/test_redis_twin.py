"""``lua/shared.lua`` against its pure-Python twin ``redis_rules.step``, on a real Redis.

Random stored states (including ones the breaker never produces: trials beyond the limit,
buckets from the future, huge trip counts whose open time overflows), every operation, the
caller's epoch right, wrong or unknown, random counts and policies. The script must answer
the same status line, store exactly the twin's hash (or leave it alone when the twin changes
nothing) and set the twin's expiry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sysdesign_kit.breaker.redis import SHARED_SCRIPT
from sysdesign_kit.breaker.redis_rules import (
    OPERATIONS,
    SharedRules,
    SharedView,
    encode,
    format_reply,
    parse_reply,
    step,
)
from sysdesign_kit.breaker.state import BreakerPolicy, State, Status

pytestmark = pytest.mark.redis

TWIN = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    yield client
    client.close()


def seconds(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


@st.composite
def rules(draw: st.DrawFn) -> SharedRules:
    open_for = draw(st.sampled_from([30.0, 0.5, 1.0]) | seconds(0.001, 1e5))
    growth = draw(st.sampled_from([1.0, 2.0]) | seconds(1.0, 10.0))
    cap = draw(st.none() | seconds(open_for, 1e7))
    rate = draw(st.sampled_from([0.5, 0.3, 1.0]) | seconds(1e-6, 1.0))
    slow_rate = draw(st.none() | st.sampled_from([0.5, 1.0]) | seconds(1e-6, 1.0))
    policy = BreakerPolicy(
        failure_rate=rate,
        minimum_calls=draw(st.integers(1, 30)),
        open_for=open_for,
        open_for_growth=growth,
        open_for_max=cap,
        half_open_calls=draw(st.integers(1, 5)),
        slow_call_rate=slow_rate,
    )
    width = draw(st.sampled_from([6.0, 1.0, 0.1]) | seconds(0.001, 1000.0))
    return SharedRules(
        policy,
        width=width,
        buckets=draw(st.integers(1, 12)),
        lease=draw(st.sampled_from([30.0]) | seconds(0.001, 1e4)),
        ttl=draw(st.sampled_from([3600.0]) | seconds(1.0, 1e5)),
    )


@st.composite
def cases(
    draw: st.DrawFn,
) -> tuple[SharedRules, dict[str, str], str, float, int | None, tuple[int, int, int]]:
    shared = draw(rules())
    now = draw(st.sampled_from([1000.0, 1_700_000_000.25]) | seconds(0.0, 2e9))
    fields: dict[str, str] = {}
    epoch: int | None = None
    if draw(st.integers(0, 9)):  # mostly a stored state, sometimes none
        state = draw(st.sampled_from(State))
        forced = draw(st.booleans()) if state is not State.HALF_OPEN else draw(st.just(False))
        since = now - draw(
            st.sampled_from([0.0, 1.5 * shared.lease]) | seconds(0.0, 2 * shared.lease)
        )
        until = 0.0
        if state is State.OPEN:
            until = math.inf if forced else now + draw(seconds(-100.0, 100.0))
        status = Status(
            state,
            epoch=draw(st.integers(0, 2**45)),
            since=since,
            open_until=until,
            trips=draw(st.integers(0, 5) | st.integers(0, 5000)),
            trials=draw(st.integers(0, 7)),
            passed=draw(st.integers(0, 7)),
            forced=forced,
        )
        current = math.floor(now / shared.width)
        buckets: dict[int, list[int]] = {}
        if state is State.CLOSED:
            for number in draw(
                st.sets(st.integers(current - shared.buckets - 2, current + 1), max_size=6)
            ):
                calls = draw(st.integers(0, 200))
                buckets[number] = [
                    calls,
                    draw(st.integers(0, calls)),
                    draw(st.integers(0, calls)),
                ]
        fields = encode(status, buckets)
        # mostly the stored epoch: operations on another one change nothing
        epoch = draw(
            st.sampled_from([status.epoch] * 5 + [status.epoch - 1, status.epoch + 1, None])
        )
    op = draw(st.sampled_from([*sorted(OPERATIONS), "f", "t", "a", "r"]))
    if op == "r":
        counts = (draw(st.integers(0, 1)), 0, 0)
    else:
        calls = draw(st.sampled_from([0, 1]) | st.integers(0, 50))
        counts = (calls, draw(st.integers(0, calls)), draw(st.integers(0, calls)))
    return shared, fields, op, now, epoch, counts


def run(
    client: redis.Redis,
    key: str,
    fields: dict[str, str],
    op: str,
    now: float,
    epoch: int | None,
    counts: tuple[int, int, int],
    shared: SharedRules,
) -> tuple[bytes, dict[str, str], int]:
    client.delete(key)
    if fields:
        client.hset(key, mapping=fields)  # type: ignore[arg-type]
    argv = [op.encode(), repr(now).encode(), b"" if epoch is None else b"%d" % epoch]
    argv += [b"%d" % n for n in counts]
    reply = SHARED_SCRIPT.call(client, [key], [*argv, *shared.args()])
    stored = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}  # type: ignore[union-attr]
    return reply, stored, client.pttl(key)


@TWIN
@given(cases())
def test_script_matches_its_twin(
    client: redis.Redis,
    redis_prefix: str,
    case: tuple[SharedRules, dict[str, str], str, float, int | None, tuple[int, int, int]],
) -> None:
    shared, fields, op, now, epoch, counts = case
    key = f"{redis_prefix}:twin:{{dep}}"
    view, stored, ttl = step(fields, op, now, epoch, counts, shared)
    reply, after, pttl = run(client, key, fields, op, now, epoch, counts, shared)
    assert reply.decode() == format_reply(view)
    assert parse_reply(reply) == view
    if stored is None:
        assert after == fields
        assert pttl == -1  # untouched: the test stored it without an expiry
    else:
        assert after == stored
        if ttl is None:
            assert pttl == -1
        else:
            assert ttl - 1000 < pttl <= ttl


def test_reply_round_trips() -> None:
    view = SharedView(State.OPEN, 7, math.inf, 2, 0, 0, True, False, 0, 0, 0)
    assert parse_reply(format_reply(view)) == view
    with pytest.raises(ValueError, match="not a shared breaker reply"):
        parse_reply(b"OK")


def test_an_open_time_grown_without_a_cap_keeps_the_hash(
    client: redis.Redis, redis_prefix: str
) -> None:
    shared = SharedRules(
        BreakerPolicy(open_for_growth=2.0), width=6.0, buckets=10, lease=30.0, ttl=3600.0
    )
    fields = encode(Status(State.CLOSED, epoch=5, since=1.0, trips=5000), {})
    view, stored, ttl = step(fields, "t", 1000.0, 5, (0, 0, 0), shared)
    assert view.state is State.OPEN
    assert view.remaining == math.inf
    assert stored is not None
    assert ttl is None
    reply, after, pttl = run(
        client, f"{redis_prefix}:{{big}}", fields, "t", 1000.0, 5, (0, 0, 0), shared
    )
    assert parse_reply(reply) == view
    assert after == stored
    assert pttl == -1
