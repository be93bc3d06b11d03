"""The RateLimiter facade: validation, peek/reset, events, shadow mode, failure policy."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError, InvalidCost, InvalidKey
from sysdesign_kit.events import BackendFailure, Event, RateLimitDecided
from sysdesign_kit.ratelimit import (
    MemoryBackend,
    RateLimiter,
    backend_from_url,
    hit_all,
    hit_all_sync,
)
from sysdesign_kit.ratelimit.backend import BoundLimit, Raw
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.rate import Rate


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty"),
        ("x" * 1025, "at most 1024"),
        (b"bytes", "must be a str"),
        (42, "must be a str"),
        (None, "must be a str"),
        ("bad\ud800", "UTF-8"),
    ],
)
async def test_bad_keys_raise_invalid_key(key: object, message: str) -> None:
    limiter = RateLimiter("5/second")
    with pytest.raises(InvalidKey, match=message):
        await limiter.hit(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey, match=message):
        limiter.sync.hit(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await limiter.peek(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        limiter.sync.reset(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("cost", [0, -1, 1.5, False, "2", 6, 10**30])
async def test_bad_costs_raise_invalid_cost(cost: object) -> None:
    limiter = RateLimiter("5/second")
    with pytest.raises(InvalidCost):
        await limiter.hit("k", cost)  # type: ignore[arg-type]
    with pytest.raises(InvalidCost):
        limiter.sync.hit("k", cost)  # type: ignore[arg-type]


def test_non_ascii_keys_are_fine() -> None:
    limiter = RateLimiter("1/second")
    assert limiter.sync.hit("клиент").allowed
    assert not limiter.sync.hit("клиент").allowed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "leaky"}, "algorithm"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"backend": "mongodb://x"}, "scheme"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RateLimiter("5/second", **kwargs)  # type: ignore[arg-type]


def test_backend_from_url_memory() -> None:
    assert isinstance(backend_from_url("memory://"), MemoryBackend)
    with pytest.raises(ConfigurationError, match="scheme"):
        backend_from_url("no-scheme")


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
async def test_peek_looks_without_charging(clock: ManualClock, algorithm: str) -> None:
    limiter = RateLimiter("3/second", algorithm=algorithm, clock=clock)  # type: ignore[arg-type]
    fresh = await limiter.peek("k")
    assert (fresh.allowed, fresh.remaining, fresh.reset_us, fresh.retry_us) == (True, 3, 0, 0)
    for left in (2, 1, 0):
        before = await limiter.peek("k")
        assert before == await limiter.peek("k")
        hit = await limiter.hit("k")
        assert (before.allowed, hit.allowed) == (True, True)
        assert (before.remaining, hit.remaining) == (left + 1, left)
    denied = await limiter.peek("k")
    assert not denied.allowed
    assert denied.retry_after > 0
    assert denied == await limiter.hit("k")
    assert denied == limiter.sync.peek("k")


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
async def test_try_acquire_charges_like_hit(clock: ManualClock, algorithm: str) -> None:
    limiter = RateLimiter("3/second", algorithm=algorithm, clock=clock)  # type: ignore[arg-type]
    assert [await limiter.try_acquire("k") for _ in range(4)] == [True, True, True, False]
    assert limiter.sync.try_acquire("j", 3) is True
    assert limiter.sync.try_acquire("j") is False
    assert (await limiter.peek("k")).remaining == 0
    with pytest.raises(InvalidKey):
        await limiter.try_acquire("")
    with pytest.raises(InvalidCost):
        limiter.sync.try_acquire("k", 4)


async def test_try_acquire_in_shadow_mode_and_with_listeners(clock: ManualClock) -> None:
    seen: list[Event] = []
    shadow = RateLimiter("1/minute", shadow=True, clock=clock, listeners=[seen.append])
    assert [await shadow.try_acquire("k") for _ in range(3)] == [True, True, True]
    assert [shadow.sync.try_acquire("k") for _ in range(2)] == [True, True]
    assert [e.allowed for e in seen if isinstance(e, RateLimitDecided)] == [True] + [False] * 4


async def test_reset_gives_the_quota_back(clock: ManualClock) -> None:
    limiter = RateLimiter("2/minute", clock=clock)
    await limiter.hit("k", 2)
    assert not (await limiter.hit("k")).allowed
    await limiter.reset("k")
    assert (await limiter.hit("k")).remaining == 1
    limiter.sync.reset("k")
    assert limiter.sync.hit("k").remaining == 1


async def test_decision_fields(clock: ManualClock) -> None:
    limiter = RateLimiter("10/minute", name="free", clock=clock)
    decision = await limiter.hit("alice", 4)
    assert (decision.allowed, decision.blocked, decision.degraded) == (True, False, False)
    assert (decision.limit, decision.remaining, decision.policy) == (10, 6, "free")
    assert decision.reset_after == pytest.approx(24.0)
    assert decision.retry_after == 0
    assert limiter.window == 60.0
    assert "free" in repr(limiter)


async def test_events_are_published_and_a_broken_listener_is_only_logged(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    limiter = RateLimiter("1/minute", name="p", clock=clock, listeners=[broken, seen.append])
    with caplog.at_level(logging.ERROR, logger="sysdesign_kit.events"):
        await limiter.hit("k")
        limiter.sync.hit("k")
    assert [type(e) for e in seen] == [RateLimitDecided, RateLimitDecided]
    first, second = seen
    assert isinstance(first, RateLimitDecided)
    assert isinstance(second, RateLimitDecided)
    assert (first.policy, first.key, first.allowed, second.allowed) == ("p", "k", True, False)
    assert "sink down" in caplog.text


async def test_shadow_mode_reports_but_never_blocks(clock: ManualClock) -> None:
    limiter = RateLimiter("1/minute", shadow=True, clock=clock)
    await limiter.hit("k")
    decision = await limiter.hit("k")
    assert not decision.allowed
    assert not decision.blocked


async def test_hit_all_is_all_or_nothing(clock: ManualClock) -> None:
    backend = MemoryBackend(clock=clock)
    per_ip = RateLimiter("3/minute", name="ip", backend=backend)
    tier = RateLimiter("1/minute", name="anonymous", backend=backend)
    first = await hit_all([(per_ip, "1.2.3.4"), (tier, "1.2.3.4")])
    assert [d.allowed for d in first] == [True, True]
    second = hit_all_sync([(per_ip, "1.2.3.4"), (tier, "1.2.3.4")])
    assert [d.allowed for d in second] == [True, False]
    # The denied request took nothing from the per-IP limit, and says so.
    assert second[0].remaining == 2
    assert (await per_ip.peek("1.2.3.4")).remaining == 2


async def test_hit_all_rejects_mixed_backends_and_empty() -> None:
    a = RateLimiter("1/minute")
    b = RateLimiter("1/minute")
    with pytest.raises(ConfigurationError, match="share one backend"):
        await hit_all([(a, "k"), (b, "k")])
    with pytest.raises(ConfigurationError, match="at least one"):
        await hit_all([])
    with pytest.raises(InvalidKey):
        await hit_all([(a, "")])


class _DownBound:
    """A bound limit whose backend is down: the error path a real server produces as a
    connection error (the Redis fault test covers the real thing)."""

    algorithm = "gcra"
    name = "down"
    owner = None

    def __init__(self, rate: Rate) -> None:
        self.rate = rate

    def _fail(self) -> BackendUnavailable:
        error = BackendUnavailable("redis://127.0.0.1:1 unreachable")
        error.__cause__ = ConnectionRefusedError(111, "refused")
        return error

    def decide(self, key: str, cost: int) -> RateLimitDecision:
        raise self._fail()

    async def adecide(self, key: str, cost: int) -> RateLimitDecision:
        raise self._fail()

    def peek(self, key: str) -> Raw:
        raise self._fail()

    async def apeek(self, key: str) -> Raw:
        raise self._fail()

    def reset(self, key: str) -> None:
        raise self._fail()

    async def areset(self, key: str) -> None:
        raise self._fail()


class _DownBackend:
    local = False
    kind = "down"

    def bind(self, algorithm: str, rate: Rate, name: str) -> BoundLimit:
        return _DownBound(rate)

    def decide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        raise _DownBound(Rate(1, 1))._fail()

    async def adecide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        raise _DownBound(Rate(1, 1))._fail()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_failure_policy_when_the_backend_is_down(fail_open: bool) -> None:
    seen: list[Event] = []
    limiter = RateLimiter(
        "10/minute", backend=_DownBackend(), fail_open=fail_open, listeners=[seen.append]
    )
    assert await limiter.try_acquire("k") is fail_open
    assert limiter.sync.try_acquire("k") is fail_open
    seen.clear()
    for decision in (
        await limiter.hit("k"),
        limiter.sync.hit("k"),
        await limiter.peek("k"),
        limiter.sync.peek("k"),
        *(await hit_all([(limiter, "k")])),
        *hit_all_sync([(limiter, "k")]),
    ):
        assert decision.degraded
        assert decision.allowed is fail_open
        assert decision.blocked is not fail_open
        if not fail_open:
            assert decision.retry_after == pytest.approx(6.0)
    failures = [e for e in seen if isinstance(e, BackendFailure)]
    assert len(failures) == 6
    assert failures[0].outcome == ("fail_open" if fail_open else "fail_closed")
    assert "ConnectionRefusedError" in failures[0].error
    # A reset is an operator's act: it is not silently dropped.
    with pytest.raises(BackendUnavailable):
        await limiter.reset("k")
