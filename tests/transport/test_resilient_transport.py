"""ResilientTransport and its async twin against a real, scripted HTTP server on loopback."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sysdesign_kit.breaker import BreakerRegistry, CountWindow
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen, ConfigurationError
from sysdesign_kit.events import (
    BreakerRejected,
    BreakerTransitioned,
    Event,
    RetryAttempted,
    RetryGaveUp,
)
from sysdesign_kit.http import (
    SEED_TIMEOUT,
    AsyncResilientTransport,
    ResilientTransport,
    default_retry,
)
from sysdesign_kit.retry import RetryBudget, testing
from tests.transport.flaky_server import FlakyServer, Reply, Reset, Stall

#: Breakers that open fast: 2 calls are enough, half of them failing.
QUICK_BREAKER = {"window": CountWindow(4), "minimum_calls": 2, "open_for": 30.0}


def waits_recorded(waits: list[float], **changes: Any) -> Any:
    """The default policy with its sync waits recorded instead of slept."""
    return default_retry(sleep=waits.append, rng=random.Random(7), **changes)


# -- retries -----------------------------------------------------------------------------


def test_a_503_with_retry_after_is_retried_after_the_servers_delay(flaky: FlakyServer) -> None:
    waits: list[float] = []
    flaky.script(Reply(503, b"busy", {"Retry-After": "2"}), Reply(200, b"paid"))
    transport = ResilientTransport(retry=waits_recorded(waits))
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        response = client.get("/payments/7")
    assert (response.status_code, response.text) == (200, "paid")
    assert waits == [2.0]  # the server's delay, exactly: no jitter on top
    assert len(flaky.requests) == 2


def test_resets_and_502s_are_retried_with_jittered_backoff(flaky: FlakyServer) -> None:
    waits: list[float] = []
    flaky.script(Reset(), Reply(502), Reply(200, b"ok"))
    transport = ResilientTransport(retry=waits_recorded(waits))
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        assert client.get("/a").text == "ok"
    assert len(waits) == 2
    assert 0.0 <= waits[0] <= 1.0  # full jitter under the 1 s ceiling
    assert 0.0 <= waits[1] <= 2.0  # then under 2 s


def test_the_last_answer_is_returned_when_retries_run_out(flaky: FlakyServer) -> None:
    waits: list[float] = []
    flaky.default = Reply(503, b"still busy")
    transport = ResilientTransport(
        retry=waits_recorded(waits),
        breaker_settings={"minimum_calls": 100, "window": CountWindow(100)},
    )
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        response = client.get("/a")
    assert (response.status_code, response.text) == (503, "still busy")
    assert len(flaky.requests) == 4  # the seed's 4 calls: waits 1 s, 2 s, 4 s (jittered)
    assert len(waits) == 3


def test_a_lost_connection_is_raised_as_httpx_raised_it(flaky: FlakyServer) -> None:
    flaky.default = Reset()
    transport = ResilientTransport(
        retry=waits_recorded([]), breaker_settings=QUICK_BREAKER | {"minimum_calls": 4}
    )
    with (
        httpx.Client(transport=transport, base_url=flaky.url) as client,
        pytest.raises(httpx.TransportError),
    ):
        client.get("/a")
    assert len(flaky.requests) == 4


@pytest.mark.parametrize(
    ("method", "headers", "sent"),
    [
        ("POST", {}, 1),  # not idempotent: sent once
        ("PATCH", {}, 1),
        ("POST", {"Idempotency-Key": "order-7"}, 2),  # the caller vouches for it
        ("PUT", {}, 2),
        ("DELETE", {}, 2),
    ],
)
def test_only_idempotent_requests_are_retried(
    flaky: FlakyServer, method: str, headers: dict[str, str], sent: int
) -> None:
    flaky.script(Reply(503), Reply(201, b"done"))
    transport = ResilientTransport(retry=waits_recorded([]))
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        response = client.request(method, "/orders", content=b'{"id": 7}', headers=headers)
    assert len(flaky.requests) == sent
    assert response.status_code == (503 if sent == 1 else 201)
    assert all(seen.body == b'{"id": 7}' for seen in flaky.requests)  # resent whole


def test_a_streamed_body_is_never_resent(flaky: FlakyServer) -> None:
    flaky.script(Reply(503), Reply(200))

    def chunks() -> Any:
        yield b"part-1,"
        yield b"part-2"

    transport = ResilientTransport(retry=waits_recorded([]))
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        response = client.put("/blob", content=chunks())
    assert response.status_code == 503
    assert len(flaky.requests) == 1


def test_the_retry_budget_stops_a_retry_storm(flaky: FlakyServer) -> None:
    clock = ManualClock()
    flaky.default = Reply(503)
    transport = ResilientTransport(
        retry=waits_recorded([], clock=clock),
        breaker_settings={"minimum_calls": 1000, "window": CountWindow(1000)},
        budget=lambda: RetryBudget(ratio=0.2, min_retries_per_second=0.0, clock=clock),
        clock=clock,
    )
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        for _ in range(50):
            assert client.get("/a").status_code == 503
    retries = len(flaky.requests) - 50
    assert 0 < retries <= 0.2 * 50  # 20% over the first tries at most, not 3 per call


# -- the breaker ---------------------------------------------------------------------------


def test_the_breaker_opens_fails_fast_and_recovers(flaky: FlakyServer) -> None:
    clock = ManualClock()
    events: list[Event] = []
    flaky.default = Reply(500)
    transport = ResilientTransport(
        retry=waits_recorded([], clock=clock),
        breaker_settings=QUICK_BREAKER,
        clock=clock,
        listeners=[events.append],
    )
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        assert client.post("/pay").status_code == 500
        assert client.post("/pay").status_code == 500
        with pytest.raises(CircuitOpen) as rejected:
            client.post("/pay")
        assert rejected.value.retry_after == pytest.approx(30.0)
        assert len(flaky.requests) == 2  # the third never left
        clock.advance(30.0)
        flaky.default = Reply(200, b"ok")
        assert [client.post("/pay").status_code for _ in range(3)] == [200] * 3  # trials
        assert client.post("/pay").status_code == 200
    name = f"http:http://127.0.0.1:{flaky.url.rsplit(':', 1)[1]}"
    assert transport.breakers[name].state.value == "closed"
    moves = [(e.previous, e.state) for e in events if isinstance(e, BreakerTransitioned)]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert sum(isinstance(e, BreakerRejected) for e in events) == 1


def test_an_open_breaker_is_never_retried(flaky: FlakyServer) -> None:
    clock = ManualClock()
    events: list[Event] = []
    flaky.default = Reply(503)
    transport = ResilientTransport(
        retry=waits_recorded([], clock=clock, listeners=[events.append]),
        breaker_settings=QUICK_BREAKER,
        clock=clock,
    )
    with (
        httpx.Client(transport=transport, base_url=flaky.url) as client,
        pytest.raises(CircuitOpen),
    ):
        client.get("/a")  # 503, 503: the breaker opens; the 3rd try is refused
    assert len(flaky.requests) == 2
    assert [e.reason for e in events if isinstance(e, RetryGaveUp)] == ["breaker_open"]
    assert sum(isinstance(e, RetryAttempted) for e in events) == 2  # both 503s


def test_4xx_answers_are_the_clients_mistake(flaky: FlakyServer) -> None:
    flaky.default = Reply(404)
    transport = ResilientTransport(breaker_settings=QUICK_BREAKER)
    with httpx.Client(transport=transport, base_url=flaky.url) as client:
        assert [client.get("/nope").status_code for _ in range(5)] == [404] * 5
    assert len(flaky.requests) == 5  # never retried, never tripping the breaker


def test_one_breaker_per_origin(flaky: FlakyServer) -> None:
    other = FlakyServer().start()
    try:
        flaky.default = Reply(500)
        transport = ResilientTransport(breaker_settings=QUICK_BREAKER, retry=waits_recorded([]))
        with httpx.Client(transport=transport) as client:
            client.post(f"{flaky.url}/a")
            client.post(f"{flaky.url}/a")
            with pytest.raises(CircuitOpen):
                client.post(f"{flaky.url}/a")
            assert client.post(f"{other.url}/a").status_code == 200  # its own breaker
        assert len(transport.breakers) == 2
    finally:
        other.stop()


def test_a_shared_registry_shares_the_breakers(flaky: FlakyServer) -> None:
    flaky.default = Reply(500)
    shared = BreakerRegistry()
    first = ResilientTransport(breakers=shared, breaker_settings=QUICK_BREAKER)
    second = ResilientTransport(breakers=shared, breaker_settings=QUICK_BREAKER)
    with (
        httpx.Client(transport=first, base_url=flaky.url) as a,
        httpx.Client(transport=second, base_url=flaky.url) as b,
    ):
        a.post("/x")
        a.post("/x")
        with pytest.raises(CircuitOpen):
            b.post("/x")


# -- timeouts ------------------------------------------------------------------------------


def _seen_timeouts(**client_options: Any) -> dict[str, float | None]:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    transport = ResilientTransport(httpx.MockTransport(handler))
    with httpx.Client(transport=transport, **client_options) as client:
        client.get("http://upstream.test/")
    return seen[0]


def test_a_client_left_at_httpx_defaults_gets_the_seed_timeouts() -> None:
    assert _seen_timeouts() == SEED_TIMEOUT.as_dict()
    assert SEED_TIMEOUT.as_dict() == {"connect": 5.0, "read": 30.0, "write": 30.0, "pool": 30.0}


def test_a_clients_own_timeout_is_kept() -> None:
    assert _seen_timeouts(timeout=httpx.Timeout(2.0, read=7.0)) == {
        "connect": 2.0, "read": 7.0, "write": 2.0, "pool": 2.0,
    }  # fmt: skip


def test_no_timeout_is_capped_by_the_total() -> None:
    seen = _seen_timeouts(timeout=None)
    assert seen == pytest.approx(dict.fromkeys(("connect", "read", "write", "pool"), 60.0), abs=0.5)


def test_a_stalled_server_costs_at_most_the_total_timeout_sync(flaky: FlakyServer) -> None:
    flaky.default = Stall(10.0)
    transport = ResilientTransport(total_timeout=0.4, retry=default_retry(deadline=0.4))
    started = time.monotonic()
    with (
        httpx.Client(transport=transport, base_url=flaky.url) as client,
        pytest.raises(httpx.TimeoutException),
    ):
        client.get("/slow")
    assert time.monotonic() - started < 3.0
    assert len(flaky.requests) == 1  # no wait would fit in what was left


async def test_a_stalled_server_costs_at_most_the_total_timeout_async(flaky: FlakyServer) -> None:
    flaky.default = Stall(10.0)
    transport = AsyncResilientTransport(
        total_timeout=0.4, retry=default_retry(deadline=0.4), timeout=httpx.Timeout(None)
    )
    started = time.monotonic()
    unbounded = httpx.Timeout(None)  # only the total bounds the request
    async with httpx.AsyncClient(
        transport=transport, base_url=flaky.url, timeout=unbounded
    ) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.post("/slow")  # sent once, cut off at the total
    assert time.monotonic() - started < 3.0


# -- async ---------------------------------------------------------------------------------


async def test_async_retries_and_breaker(flaky: FlakyServer) -> None:
    events: list[Event] = []
    flaky.script(Reply(503, headers={"Retry-After": "0"}), Reset(), Reply(200, b"ok"))
    transport = AsyncResilientTransport(listeners=[events.append])
    with testing.instant():
        async with httpx.AsyncClient(transport=transport, base_url=flaky.url) as client:
            response = await client.get("/a")
    assert (response.status_code, response.text) == (200, "ok")
    assert len(flaky.requests) == 3
    assert [e.attempt for e in events if isinstance(e, RetryAttempted)] == [1, 2]


async def test_async_breaker_opens_and_fails_fast(flaky: FlakyServer) -> None:
    clock = ManualClock()
    flaky.default = Reply(500)
    transport = AsyncResilientTransport(breaker_settings=QUICK_BREAKER, clock=clock)
    async with httpx.AsyncClient(transport=transport, base_url=flaky.url) as client:
        await client.post("/pay")
        await client.post("/pay")
        with pytest.raises(CircuitOpen):
            await client.post("/pay")
    assert len(flaky.requests) == 2


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ResilientTransport(object()), "transport must be an httpx.BaseTransport"),  # type: ignore[arg-type]
        (lambda: AsyncResilientTransport(httpx.HTTPTransport()), "AsyncBaseTransport"),  # type: ignore[arg-type]
        (lambda: ResilientTransport(timeout=5), "timeout must be an httpx.Timeout"),  # type: ignore[arg-type]
        (lambda: ResilientTransport(total_timeout=0), "total_timeout must be positive"),
        (lambda: ResilientTransport(total_timeout=float("inf")), "total_timeout must be positive"),
        (lambda: ResilientTransport(retry="yes"), "retry must be a Retry"),  # type: ignore[arg-type]
        (lambda: ResilientTransport(breakers={}), "breakers must be a BreakerRegistry"),  # type: ignore[arg-type]
        (lambda: ResilientTransport(breaker_settings={"failure_rate": 2}), "failure_rate"),
        (lambda: ResilientTransport(budget=lambda: 3), "must return a RetryBudget"),  # type: ignore[arg-type, return-value]
        (lambda: ResilientTransport(budget=lambda: RetryBudget(ratio=5)), "ratio"),
        (lambda: ResilientTransport(idempotent_methods=["GET", "PO ST"]), "method names"),
        (lambda: default_retry(statuses=[503, 999]), "statuses must be HTTP status codes"),
        (lambda: default_retry(attempts=0), "attempts"),
    ],
)
def test_bad_settings_are_named(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


# -- shared breaker state --------------------------------------------------------------------


@pytest.mark.redis
async def test_transports_share_their_breakers_through_redis(
    flaky: FlakyServer, redis_url: str, redis_prefix: str
) -> None:
    from sysdesign_kit.breaker import RedisBreakerState

    shared = RedisBreakerState.from_url(redis_url, prefix=redis_prefix, flush_interval=0.001)
    # 3 calls before a rate counts: the second transport alone never trips (2 calls).
    settings = {**QUICK_BREAKER, "minimum_calls": 3, "shared": shared}
    flaky.script(Reply(200))
    flaky.default = Reply(500)
    # Two transports with registries of their own: two processes, as far as they know.
    first = AsyncResilientTransport(breaker_settings=settings)
    second = AsyncResilientTransport(breaker_settings=settings)
    try:
        async with (
            httpx.AsyncClient(transport=first, base_url=flaky.url) as a,
            httpx.AsyncClient(transport=second, base_url=flaky.url) as b,
        ):
            assert (await b.post("/pay")).status_code == 200
            for _ in range(3):
                assert (await a.post("/pay")).status_code == 500  # the first one trips
            shared.drain()
            assert (await b.post("/pay")).status_code == 500  # and b learns it after this
            shared.drain()
            with pytest.raises(CircuitOpen):
                await b.post("/pay")  # 1 success + 1 failure: b alone would not refuse
        assert len(flaky.requests) == 5
    finally:
        shared.close()
