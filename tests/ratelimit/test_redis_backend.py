"""The Redis backend on a real server: the memory backend's exact answers, all-or-nothing
multi-limits, peek, reset, expiry, the deny cache and automatic batching.

Exact sequences run with ``server_time=False`` so the scripts read the test's manual clock
instead of Redis TIME (the one test-only switch); everything else uses server time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest.mock import ANY

import pytest
import redis

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError, InvalidKey
from sysdesign_kit.ratelimit import (
    MemoryBackend,
    RateLimitDecision,
    RateLimiter,
    backend_from_url,
    hit_all,
    hit_all_sync,
)
from sysdesign_kit.ratelimit.backend import LimiterBackend
from sysdesign_kit.ratelimit.redis import RedisBackend
from sysdesign_kit.ratelimit.redis_wire import Wire

S = 1_000_000
Step = tuple[int, int, tuple[bool, int, int, int]]  # advance us, cost, expected raw

# Hand-computed: each line is (advance in us, cost, (allowed, remaining, reset_us, retry_us)).
SEQUENCES: dict[tuple[str, str], list[Step]] = {
    ("token_bucket", "5/second"): [
        (0, 1, (True, 4, 200_000, 0)),
        (0, 3, (True, 1, 800_000, 0)),
        (0, 2, (False, 1, 800_000, 200_000)),  # a denial charges nothing
        (0, 1, (True, 0, 1_000_000, 0)),
        (0, 1, (False, 0, 1_000_000, 200_000)),
        (199_999, 1, (False, 0, 800_001, 1)),  # not a microsecond early
        (1, 1, (True, 0, 1_000_000, 0)),  # one token back every 200 ms
        (1_000_000, 1, (True, 4, 200_000, 0)),  # fully refilled
    ],
    ("token_bucket", "10/minute burst 2"): [
        (0, 1, (True, 1, 6_000_000, 0)),
        (0, 1, (True, 0, 12_000_000, 0)),
        (0, 1, (False, 0, 12_000_000, 6_000_000)),
        (6_000_000, 1, (True, 0, 12_000_000, 0)),
    ],
    ("sliding_window", "10/10s"): [
        (0, 4, (True, 6, 20 * S, 0)),
        (0, 6, (True, 0, 20 * S, 0)),
        (0, 1, (False, 0, 20 * S, 11 * S)),  # only the next window can take it
        (11 * S, 1, (True, 0, 19 * S, 0)),  # 1 s in: 10 * 9/10 = 9 weigh in
        (0, 1, (False, 0, 19 * S, 1 * S)),
        (1 * S, 1, (True, 0, 18 * S, 0)),
        (30 * S, 1, (True, 9, 18 * S, 0)),  # two windows later all is forgotten
    ],
    ("fixed_window", "3/second"): [
        (0, 1, (True, 2, 1_000_000, 0)),
        (0, 2, (True, 0, 1_000_000, 0)),
        (400_000, 1, (False, 0, 600_000, 600_000)),
        (599_999, 1, (False, 0, 1, 1)),
        (1, 3, (True, 0, 1_000_000, 0)),
        (0, 1, (False, 0, 1_000_000, 1_000_000)),
    ],
    ("fixed_window", "5/second"): [
        (0, 3, (True, 2, 1_000_000, 0)),
        (0, 3, (False, 2, 1_000_000, 1_000_000)),
        (0, 2, (True, 0, 1_000_000, 0)),
    ],
    # Too large for microseconds in Lua doubles: Redis counts 10 us units (3 us into one).
    ("sliding_window", "100000/day"): [
        (3, 99_999, (True, 1, 171_799_999_997, 0)),
        (0, 1, (True, 0, 171_799_999_997, 0)),
        # The next window, once 1/100000 of it has passed (the window starts 3 us early).
        (0, 1, (False, 0, 171_799_999_997, 85_400_863_997)),
        (85_400_863_996, 1, (False, 0, 86_399_136_001, 1)),  # not a microsecond early
        (1, 1, (True, 0, 172_799_136_000, 0)),
        (0, 1, (False, 0, 172_799_136_000, 864_000)),
    ],
    # ... and 100 us units, 37 us into one.
    ("sliding_window", "1000000/day"): [
        (37, 999_999, (True, 1, 171_799_999_963, 0)),
        (0, 1, (True, 0, 171_799_999_963, 0)),
        (0, 1, (False, 0, 171_799_999_963, 85_400_086_363)),
        (85_400_086_362, 1, (False, 0, 86_399_913_601, 1)),
        (1, 1, (True, 0, 172_799_913_600, 0)),
        (0, 1, (False, 0, 172_799_913_600, 86_400)),
    ],
    ("token_bucket", "1000000/day burst 1000000"): [
        (0, 1_000_000, (True, 0, 86_400_000_000, 0)),
        (0, 1, (False, 0, 86_400_000_000, 86_400)),
        (86_399, 1, (False, 0, 86_399_913_601, 1)),
        (1, 1, (True, 0, 86_400_000_000, 0)),
    ],
}


@pytest.fixture
async def make_redis(
    redis_url: str, redis_prefix: str, clock: ManualClock
) -> AsyncIterator[Callable[..., RedisBackend]]:
    """Backends on the test's prefix and manual clock; closed afterwards."""
    made: list[RedisBackend] = []

    def make(**options: Any) -> RedisBackend:
        options = {"prefix": redis_prefix, "clock": clock, "server_time": False, **options}
        backend = RedisBackend.from_url(redis_url, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


@pytest.fixture(params=["memory", "redis", "redis-no-deny-cache"])
def backend(
    request: pytest.FixtureRequest, clock: ManualClock, make_redis: Callable[..., RedisBackend]
) -> LimiterBackend:
    if request.param == "memory":
        return MemoryBackend(clock=clock)
    return make_redis(deny_cache=0 if request.param == "redis-no-deny-cache" else 10_000)


@pytest.mark.parametrize("api", ["async", "sync"])
@pytest.mark.parametrize(("algorithm", "rate"), list(SEQUENCES))
async def test_exact_sequences(
    backend: LimiterBackend, clock: ManualClock, algorithm: str, rate: str, api: str
) -> None:
    limiter = RateLimiter(rate, algorithm=algorithm, backend=backend)  # type: ignore[arg-type]
    for advance, cost, expected in SEQUENCES[algorithm, rate]:
        clock.advance(advance / S)
        if api == "async":
            decision = await limiter.hit("user-1", cost)
        else:
            decision = limiter.sync.hit("user-1", cost)
        assert tuple(decision)[:4] == expected, (advance, cost)
        assert not decision.degraded


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
async def test_peek_does_not_charge(
    backend: LimiterBackend, clock: ManualClock, algorithm: str
) -> None:
    limiter = RateLimiter("4/second", algorithm=algorithm, backend=backend)  # type: ignore[arg-type]
    first = await limiter.hit("k", 3)
    for _ in range(3):
        peeked = await limiter.peek("k")
        assert peeked == limiter.sync.peek("k")
    # remaining and reset as the key stands; allowed and retry for a request of cost 1.
    assert (peeked.remaining, peeked.reset_us) == (first.remaining, first.reset_us) == (1, ANY)
    hit = await limiter.hit("k")
    assert (peeked.allowed, peeked.retry_us) == (hit.allowed, hit.retry_us) == (True, 0)
    assert hit.remaining == 0
    peeked = await limiter.peek("k")
    assert (peeked.allowed, peeked.remaining) == (False, 0)
    assert peeked.retry_us == (await limiter.hit("k")).retry_us > 0


async def test_multi_limit_is_all_or_nothing(backend: LimiterBackend) -> None:
    per_ip = RateLimiter("5/second", backend=backend, name="ip")
    tier = RateLimiter("2/second", algorithm="fixed_window", backend=backend, name="tier")
    for _ in range(2):
        assert all(d.allowed for d in await hit_all([(per_ip, "1.2.3.4"), (tier, "alice")]))
    denied = hit_all_sync([(per_ip, "1.2.3.4"), (tier, "alice")])
    assert [d.allowed for d in denied] == [True, False]
    # The per-IP limit was not charged by the denied request: it reports its state as is.
    assert tuple(denied[0])[:4] == (True, 3, 400_000, 0)
    assert (await per_ip.peek("1.2.3.4")).remaining == 3
    assert denied[1].retry_us == 1_000_000


async def test_reset_gives_the_quota_back(backend: LimiterBackend) -> None:
    limiter = RateLimiter("2/minute", backend=backend)
    for reset in (limiter.reset, limiter.sync.reset):
        await limiter.hit("k", 2)
        assert not (await limiter.hit("k")).allowed  # now also in the deny cache
        result = reset("k")
        if asyncio.iscoroutine(result):
            await result
        assert (await limiter.hit("k")).remaining == 1
        await limiter.reset("k")


async def test_state_keys_and_their_expiry(
    make_redis: Callable[..., RedisBackend], redis_url: str, redis_prefix: str
) -> None:
    backend = make_redis()
    cases = [
        ("token_bucket", "g", "10/second", 100_000),
        ("sliding_window", "s", "10/2s", 4_000_000),
        ("fixed_window", "f", "10/5s", 5_000_000),
    ]
    client = redis.Redis.from_url(redis_url)
    try:
        for algorithm, code, rate, reset_us in cases:
            limiter = RateLimiter(rate, algorithm=algorithm, backend=backend, name="p:1")  # type: ignore[arg-type]
            decision = await limiter.hit("bob{x}")
            assert decision.reset_us == reset_us
            key = f"{redis_prefix}:rl:{code}:p%3A1:{{bob{{x}}}}"
            ttl = client.pttl(key)
            assert reset_us // 1000 - 1000 < ttl <= reset_us // 1000, (key, ttl)
    finally:
        client.close()


async def test_server_time_decides_by_default(
    make_redis: Callable[..., RedisBackend], redis_url: str, redis_prefix: str
) -> None:
    # The manual clock sits at 1000 s; Redis TIME is ~1.7e9 s: the windows follow TIME.
    backend = make_redis(server_time=True)
    limiter = RateLimiter("2/hour", algorithm="fixed_window", backend=backend, name="t")
    assert [(await limiter.hit("k")).allowed for _ in range(3)] == [True, True, False]
    client = redis.Redis.from_url(redis_url)
    try:
        seconds, micros = client.time()
        stored: bytes = client.get(f"{redis_prefix}:rl:f:t:{{k}}")  # type: ignore[assignment]
        index, count = stored.split(b":")
    finally:
        client.close()
    assert int(index) == (seconds * S + micros) // (3600 * S)
    assert int(count) == 2


async def test_coarse_units_on_server_time(
    make_redis: Callable[..., RedisBackend], redis_url: str, redis_prefix: str
) -> None:
    backend = make_redis(server_time=True, deny_cache=0)
    limiter = RateLimiter("100000/day", algorithm="sliding_window", backend=backend, name="d")
    assert (await limiter.hit("k", 99_999)).remaining == 1
    assert limiter.sync.hit("k").remaining == 0
    denied = await limiter.hit("k")
    assert not denied.allowed
    # From the next day on, once 1/100000 of it has passed; the day is Redis's.
    client = redis.Redis.from_url(redis_url)
    try:
        seconds, micros = client.time()
        stored: bytes = client.get(f"{redis_prefix}:rl:s:d:{{k}}")  # type: ignore[assignment]
    finally:
        client.close()
    now, day = seconds * S + micros, 86_400 * S
    assert stored == b"%d:0:100000" % (now // day)
    next_day = (now // day + 1) * day
    assert next_day - now + day // 100_000 <= denied.retry_us + 10
    assert denied.retry_us <= next_day - now + day // 100_000 + 1_000_000


async def test_deny_cache_answers_locally_until_retry_after(
    make_redis: Callable[..., RedisBackend], redis_url: str, redis_prefix: str, clock: ManualClock
) -> None:
    limiter = RateLimiter("2/second", backend=make_redis(), name="c")
    await limiter.hit("k", 2)
    first = await limiter.hit("k")
    assert (first.allowed, first.retry_us) == (False, 500_000)
    # Erase the state behind the backend's back: only a round trip would notice.
    client = redis.Redis.from_url(redis_url)
    client.delete(f"{redis_prefix}:rl:g:c:{{k}}")
    client.close()
    clock.advance(0.4999)
    cached = limiter.sync.hit("k")
    assert tuple(cached)[:4] == (False, 0, 500_100, 100)
    clock.advance(0.0001)
    assert (await limiter.hit("k")).remaining == 1  # asked Redis again


async def test_deny_cache_stays_bounded(make_redis: Callable[..., RedisBackend]) -> None:
    limiter = RateLimiter("1/minute", backend=make_redis(deny_cache=3), name="b")
    for i in range(10):
        await limiter.hit(f"k{i}")
        assert not (await limiter.hit(f"k{i}")).allowed
    assert len(limiter._bound.denied) <= 3  # type: ignore[attr-defined]


async def test_concurrent_callers_are_batched_and_exact(
    make_redis: Callable[..., RedisBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    real_call = Wire.call

    async def counting(self: Wire, command: bytes) -> Any:
        calls.append(command)
        return await real_call(self, command)

    monkeypatch.setattr(Wire, "call", counting)
    limiter = RateLimiter("20/second", algorithm="fixed_window", backend=make_redis())
    decisions = await asyncio.gather(*(limiter.hit("k") for _ in range(50)))
    allowed = [d for d in decisions if d.allowed]
    # In arrival order, as if one after the other: 20 allowed with remaining 19..0.
    assert sorted(d.remaining for d in allowed) == list(range(20))
    assert [d.allowed for d in decisions] == [True] * 20 + [False] * 30
    assert len(calls) < 10  # 50 decisions, a handful of round trips


async def test_a_cancelled_queued_caller_is_not_charged(
    make_redis: Callable[..., RedisBackend],
) -> None:
    limiter = RateLimiter("3/minute", algorithm="fixed_window", backend=make_redis(max_inflight=1))
    first = asyncio.ensure_future(limiter.hit("k"))
    await asyncio.sleep(0)  # `first` is on the wire; the next ones queue behind it
    queued = [asyncio.ensure_future(limiter.hit("k")) for _ in range(3)]
    await asyncio.sleep(0)
    queued[1].cancel()
    results = [await first, await queued[0], await queued[2]]
    assert [d.allowed for d in results] == [True, True, True]
    assert queued[1].cancelled()
    assert (await limiter.peek("k")).remaining == 0


async def test_callers_cancelled_in_flight_leave_the_connection_in_step(
    make_redis: Callable[..., RedisBackend],
) -> None:
    backend = make_redis(max_batch=4)
    limiter = RateLimiter("1000/minute", algorithm="fixed_window", backend=backend)
    tasks = [asyncio.ensure_future(limiter.hit(f"k{i % 3}")) for i in range(30)]
    await asyncio.sleep(0)  # the first is on its way, the others queue
    for task in tasks[::3]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::3])
    kept = [r for i, r in enumerate(results) if i % 3]
    assert all(isinstance(r, RateLimitDecision) and r.allowed for r in kept)
    # Replies of the cancelled ones were read and dropped: answers still match requests.
    for i in range(5):
        assert (await limiter.hit("fresh")).remaining == 999 - i
    await backend.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running


async def test_decide_many_with_mixed_algorithms_on_one_key(
    make_redis: Callable[..., RedisBackend],
) -> None:
    backend = make_redis()
    limiters = [
        RateLimiter("3/second", algorithm=algorithm, backend=backend, name="m")
        for algorithm in ("token_bucket", "sliding_window", "fixed_window")
    ]
    for expected in (2, 1, 0):
        decisions = await hit_all([(limiter, "k") for limiter in limiters])
        assert [d.remaining for d in decisions] == [expected] * 3
    assert not any(d.allowed for d in hit_all_sync([(limiter, "k") for limiter in limiters]))


async def test_limits_on_other_backends_cannot_be_mixed(
    make_redis: Callable[..., RedisBackend],
) -> None:
    on_redis = RateLimiter("3/second", backend=make_redis())
    in_memory = MemoryBackend().bind("gcra", on_redis.rate, "x")
    with pytest.raises(ConfigurationError, match="share one backend"):
        on_redis.backend.decide_many([(on_redis._bound, "k"), (in_memory, "k")], 1)


@pytest.mark.parametrize("key", ["\ud800", "a\udcffb"])
async def test_keys_that_are_not_utf8_are_invalid(
    make_redis: Callable[..., RedisBackend], key: str
) -> None:
    limiter = RateLimiter("3/second", backend=make_redis())
    bound = limiter._bound
    with pytest.raises(InvalidKey, match="UTF-8"):
        bound.decide(key, 1)
    with pytest.raises(InvalidKey, match="UTF-8"):
        await bound.adecide(key, 1)
    with pytest.raises(InvalidKey, match="UTF-8"):
        await limiter.hit(key)
    with pytest.raises(InvalidKey):
        bound.decide(b"bytes", 1)  # type: ignore[arg-type]


async def test_odd_but_valid_keys_are_distinct(make_redis: Callable[..., RedisBackend]) -> None:
    limiter = RateLimiter("1/minute", backend=make_redis())
    keys = ["a}b", "a}c", "{a}", "ключ", "x" * 1024, "a b\tc"]
    assert [(await limiter.hit(key)).allowed for key in keys] == [True] * len(keys)
    assert [(await limiter.hit(key)).allowed for key in keys] == [False] * len(keys)


@pytest.mark.parametrize(
    ("rate", "algorithm", "unit"),
    [
        ("100/minute", "sliding_window", 1),
        ("100000/day", "sliding_window", 10),
        ("1000000/day", "sliding_window", 100),
        ("1000000000/366d", "sliding_window", 10**7),
        ("1000000/day burst 1000000", "token_bucket", 1),
        ("1000000000/366d", "fixed_window", 1),
    ],
)
def test_large_rates_count_coarser_time_units(rate: str, algorithm: str, unit: int) -> None:
    backend = RedisBackend()
    limiter = RateLimiter(rate, algorithm=algorithm, backend=backend)  # type: ignore[arg-type]
    assert limiter._bound.unit == unit  # type: ignore[attr-defined]
    backend.close()


@pytest.mark.parametrize(
    ("rate", "algorithm", "advice"),
    [
        ("1/366d burst 1000000000", "token_bucket", "over 71 years.*Use a lower burst"),
        # Units of 10 s would do, but they do not divide the period.
        ("1000000000/31622399s", "sliding_window", "multiple of 10000000 us, or a lower limit"),
    ],
)
def test_rates_no_time_unit_makes_exact_are_refused(rate: str, algorithm: str, advice: str) -> None:
    backend = RedisBackend()
    with pytest.raises(ConfigurationError, match=f"too large for exact arithmetic.*{advice}"):
        RateLimiter(rate, algorithm=algorithm, backend=backend)  # type: ignore[arg-type]
    backend.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deny_cache": -1}, "deny_cache"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"max_batch": "8"}, "max_batch"),
        ({"prefix": "a b"}, "prefix"),
        ({"colour": "blue"}, "unknown option 'colour'"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisBackend.from_url("redis://127.0.0.1:6379/0", **options)


def test_backend_from_url_and_unknown_algorithm(redis_url: str) -> None:
    backend = backend_from_url(redis_url.replace("redis://", "REDIS://"))
    assert isinstance(backend, RedisBackend)
    assert (backend.kind, backend.local) == ("redis", False)
    assert "prefix='sdk'" in repr(backend)
    with pytest.raises(ConfigurationError, match="algorithm"):
        backend.bind("leaky_bucket", RateLimiter("1/s").rate, "x")
    backend.close()


def test_each_event_loop_gets_its_own_connection(redis_url: str, redis_prefix: str) -> None:
    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix)
    limiter = RateLimiter("5/minute", backend=backend)

    async def use() -> int:
        decision = await limiter.hit("k")
        await backend.aclose()
        return decision.remaining

    assert [asyncio.run(use()) for _ in range(3)] == [4, 3, 2]
    assert limiter.sync.hit("k").remaining == 1
    backend.close()


async def test_over_ip_limit_peeks_the_per_ip_limit_only(backend: LimiterBackend) -> None:
    from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal
    from sysdesign_kit.ratelimit.tiers import tiered_limits

    limits = tiered_limits(backend=backend, anonymous="10/minute", per_ip="2/minute")
    scope: dict[str, Any] = {"type": "http", "client": ("198.51.100.7", 4000), "headers": []}
    premium = {**scope, PRINCIPAL_SCOPE_KEY: Principal("ada", tier="premium")}
    assert not await limits.over_ip_limit(scope)
    for _ in range(2):
        assert [d.allowed for d in await hit_all(limits.resolve(scope))] == [True, True]
    assert not await limits.over_ip_limit({**scope, "client": ("198.51.100.8", 4000)})
    assert await limits.over_ip_limit(scope)
    assert await limits.over_ip_limit(premium)  # whoever sends from that address
    assert await limits.over_ip_limit(scope)  # peeking charges nothing
    assert not await tiered_limits(backend=backend, per_ip="2/minute").over_ip_limit(
        {**scope, "client": None}
    )  # no address, no key: not "over"
