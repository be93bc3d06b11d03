"""JWKSKeys against a real identity-provider stand-in on loopback that rotates keys, goes
down and serves garbage; time is a ManualClock, so refresh schedules are exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import BackendFailure, Event
from sysdesign_kit.gateway.jwks import JWKSKeys, JWKSStatus
from sysdesign_kit.gateway.keys import KeySource, VerificationKey
from sysdesign_kit.http import AsyncResilientTransport, default_retry
from tests.gateway.jwks_keys import b64, jwks, private_key, public_jwk, token
from tests.transport.flaky_server import FlakyServer, Reply, Reset, Stall, running

A = public_jwk(private_key("RSA"), "a")
B = public_jwk(private_key("P-256"), "b")
C = public_jwk(private_key("Ed25519"), "c")


def serve(*keys: dict[str, Any], cache_control: str | None = None) -> Reply:
    headers = {"Content-Type": "application/jwk-set+json"}
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    return Reply(200, jwks(*keys), headers)


@pytest.fixture
def idp() -> Iterator[FlakyServer]:
    """The identity provider's JWKS endpoint (at any path)."""
    yield from running()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait (real time, generously bounded) for the background task to get somewhere."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def idle(clock: ManualClock) -> None:
    """Wait until the background task sleeps again (after any fetch it started)."""
    await asyncio.sleep(0)
    await until(lambda: clock.pending_sleepers == 1)


def verify(key: VerificationKey, signed: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(signed, key.key, algorithms=sorted(key.algorithms))
    return claims


# -- loading and answering -----------------------------------------------------------------


async def test_the_first_fetch_loads_the_set_then_get_answers_from_memory(
    idp: FlakyServer,
) -> None:
    idp.default = serve(A, B, C)
    keys = JWKSKeys(f"{idp.url}/jwks", clock=ManualClock())
    assert isinstance(keys, KeySource)
    try:
        assert keys.get("a") is None  # get never fetches
        assert idp.requests == []
        key = await keys.fetch("a")
        assert key is not None
        assert key.algorithms == {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
        assert all(keys.get("a") is key for _ in range(100))
        assert await keys.fetch("a") is key
        assert len(idp.requests) == 1
        assert idp.requests[0].path == "/jwks"
        assert idp.requests[0].headers["accept"].startswith("application/jwk-set+json")
        for kid, kind, alg in [
            ("a", "RSA", "PS256"),
            ("b", "P-256", "ES256"),
            ("c", "Ed25519", "EdDSA"),
        ]:
            found = keys.get(kid)
            assert found is not None
            assert verify(found, token(private_key(kind), alg, kid))["sub"] == "alice"
    finally:
        await keys.aclose()


async def test_rotated_keys_arrive_with_the_background_refresh_and_removed_ones_go(
    idp: FlakyServer,
) -> None:
    clock = ManualClock()
    idp.default = serve(A)
    async with JWKSKeys(f"{idp.url}/jwks", clock=clock) as keys:
        assert keys.get("a") is not None
        idp.default = serve(A, B)
        clock.advance(299)
        await idle(clock)
        assert (len(idp.requests), keys.get("b")) == (1, None)
        clock.advance(1)
        await idle(clock)
        assert len(idp.requests) == 2
        assert keys.get("a") is not None
        assert keys.get("b") is not None
        idp.default = serve(B)  # "a" retired
        clock.advance(300)
        await idle(clock)
        assert keys.get("a") is None
        assert keys.get("b") is not None
    assert clock.pending_sleepers == 0  # aclose stopped the background task


async def test_a_new_kid_is_fetched_at_once_by_the_first_token_that_carries_it(
    idp: FlakyServer,
) -> None:
    clock = ManualClock()
    idp.default = serve(A)
    async with JWKSKeys(f"{idp.url}/jwks", clock=clock) as keys:
        idp.default = serve(A, C)
        clock.advance(30)
        await idle(clock)
        key = await keys.fetch("c")
        assert key is not None
        assert verify(key, token(private_key("Ed25519"), "EdDSA", "c"))["sub"] == "alice"
        assert len(idp.requests) == 2


@pytest.mark.parametrize(
    ("cache_control", "refresh_after"),
    [
        (None, 300),  # refresh_interval
        ("public, max-age=120", 120),
        ("max-age=5", 60),  # held at min_refresh
        ("max-age=86400", 3600),  # held at max_refresh
        ("no-cache", 60),
    ],
)
async def test_cache_control_max_age_sets_the_refresh_within_bounds(
    idp: FlakyServer, cache_control: str | None, refresh_after: float
) -> None:
    clock = ManualClock()
    idp.default = serve(A, cache_control=cache_control)
    async with JWKSKeys(f"{idp.url}/jwks", clock=clock):
        clock.advance(refresh_after - 1)
        await idle(clock)
        assert len(idp.requests) == 1
        clock.advance(1)
        await idle(clock)
        assert len(idp.requests) == 2


# -- unknown kids --------------------------------------------------------------------------


async def test_a_flood_of_unknown_kids_costs_one_request_per_interval(idp: FlakyServer) -> None:
    clock = ManualClock()
    idp.default = serve(A)
    keys = JWKSKeys(f"{idp.url}/jwks", clock=clock)
    try:
        assert await keys.fetch("a") is not None
        for i in range(200):
            assert await keys.fetch(f"random-{i}") is None
        assert len(idp.requests) == 1  # the set was fetched less than 30 s ago
        clock.advance(30)
        for i in range(200):
            assert await keys.fetch(f"again-{i}") is None
        assert len(idp.requests) == 2
        clock.advance(29.9)
        assert await keys.fetch("more") is None
        assert len(idp.requests) == 2
    finally:
        await keys.aclose()


async def test_concurrent_lookups_of_an_unknown_kid_share_one_request(idp: FlakyServer) -> None:
    clock = ManualClock()
    idp.default = serve(A)
    keys = JWKSKeys(f"{idp.url}/jwks", clock=clock)
    try:
        await keys.fetch("a")
        idp.script(Stall(0.2, serve(A, B)))
        clock.advance(30)
        quitter = asyncio.create_task(keys.fetch("b"))
        await asyncio.sleep(0.02)
        quitter.cancel()  # a caller that gives up does not cancel the others' request
        found = await asyncio.gather(*(keys.fetch("b") for _ in range(50)))
        assert found[0] is not None
        assert all(key is found[0] for key in found)
        assert len(idp.requests) == 2
    finally:
        await keys.aclose()


# -- failures ------------------------------------------------------------------------------

# A good set, padded past max_bytes (256 KiB): refused for its size alone.
BIG = Reply(200, jwks(A) + b" " * 300_000)
FAILURES = {
    "503": Reply(503, b"down"),
    "404": Reply(404, b"gone"),
    "redirect": Reply(302, b"", {"Location": "http://127.0.0.1:9/jwks"}),
    "reset": Reset(),
    "html": Reply(200, b"<html>maintenance</html>"),
    "wrong shape": Reply(200, b'{"keys": "a"}'),
    "empty set": Reply(200, b'{"keys": []}'),
    "only bad keys": Reply(200, jwks({"kty": "oct", "kid": "h", "k": b64(b"secret" * 6)})),
    "too big": BIG,
}


@pytest.mark.parametrize("failure", list(FAILURES.values()), ids=list(FAILURES))
async def test_a_failing_endpoint_keeps_the_last_good_keys_and_says_so(
    idp: FlakyServer, failure: Any
) -> None:
    clock = ManualClock()
    events: list[Event] = []
    idp.default = serve(A)
    url = f"{idp.url}/jwks"
    async with JWKSKeys(url, clock=clock, listeners=[events.append]) as keys:
        key = keys.get("a")
        assert key is not None
        idp.default = failure
        clock.advance(300)
        await idle(clock)
        assert keys.get("a") is key
        assert len(events) == 1
        event = events[0]
        assert isinstance(event, BackendFailure)
        assert (event.component, event.backend, event.operation, event.outcome) == (
            f"jwks:{url}",
            url,
            "fetch_jwks",
            "serve_stale",
        )
        clock.advance(30)
        assert await keys.fetch("c") is None  # answered, not raised
        (status,) = keys.status()
        assert (status.kids, status.failures) == (frozenset({"a"}), 2)
        assert status.age == 330
        assert status.last_error
        assert verify(key, token(private_key("RSA"), "RS256", "a"))["sub"] == "alice"
        idp.default = serve(C)  # back, and rotated meanwhile
        clock.advance(30)
        assert await keys.fetch("c") is not None
        assert keys.get("a") is None
        assert keys.status() == [JWKSStatus(None, url, frozenset({"c"}), 0.0, 0, None)]


async def test_a_body_over_the_limit_without_a_length_is_cut_off() -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b" " * 1024

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    transport = httpx.MockTransport(handler)
    events: list[Event] = []
    keys = JWKSKeys(
        "https://idp.example/jwks", transport=transport, max_bytes=8192, listeners=[events.append]
    )
    try:
        assert await keys.fetch("a") is None
        assert isinstance(events[0], BackendFailure)
        assert "over 8192 bytes" in events[0].error
        assert events[0].outcome == "fail_closed"
        assert len(sent) < 20
    finally:
        await keys.aclose()


async def test_without_start_a_due_refresh_runs_behind_a_known_kids_answer(
    idp: FlakyServer,
) -> None:
    clock = ManualClock()
    idp.default = serve(A)
    keys = JWKSKeys(f"{idp.url}/jwks", clock=clock)
    try:
        key = await keys.fetch("a")
        idp.script(Stall(0.2, serve(A, B)))
        clock.advance(300)
        assert await keys.fetch("a") is key  # at once, not after the stalled fetch
        assert keys.get("b") is None
        await until(lambda: keys.get("b") is not None)
        assert len(idp.requests) == 2
    finally:
        await keys.aclose()


async def test_a_stalled_endpoint_is_given_up_on_after_the_timeout(idp: FlakyServer) -> None:
    events: list[Event] = []
    idp.script(Stall(10))
    keys = JWKSKeys(f"{idp.url}/jwks", timeout=0.2, listeners=[events.append])
    try:
        started = asyncio.get_running_loop().time()
        assert await keys.fetch("a") is None
        assert asyncio.get_running_loop().time() - started < 5
        assert isinstance(events[0], BackendFailure)
        assert events[0].error.startswith("TimeoutError")
    finally:
        await keys.aclose()


async def test_start_with_the_endpoint_down_reports_it_and_retries_with_backoff(
    idp: FlakyServer,
) -> None:
    clock = ManualClock()
    events: list[Event] = []
    idp.script(Reply(503), Reply(503))
    idp.default = serve(A)
    async with JWKSKeys(f"{idp.url}/jwks", clock=clock, listeners=[events.append]) as keys:
        assert keys.get("a") is None
        assert [e.outcome for e in events if isinstance(e, BackendFailure)] == ["fail_closed"]
        clock.advance(30)
        await idle(clock)
        assert (len(idp.requests), len(events)) == (2, 2)
        clock.advance(59)  # the second failure doubled the wait to 60 s
        await idle(clock)
        assert len(idp.requests) == 2
        clock.advance(1)
        await idle(clock)
        assert len(idp.requests) == 3
        assert keys.get("a") is not None


async def test_max_stale_bounds_how_long_keys_outlive_a_failing_endpoint(
    idp: FlakyServer,
) -> None:
    clock = ManualClock()
    idp.default = serve(A)
    async with JWKSKeys(f"{idp.url}/jwks", clock=clock, max_stale=900) as keys:
        idp.default = Reply(503)
        clock.advance(900)
        await idle(clock)
        assert keys.get("a") is not None
        clock.advance(1)
        assert keys.get("a") is None


async def test_a_client_over_the_resilient_transport_retries_a_flaky_endpoint(
    idp: FlakyServer,
) -> None:
    idp.script(Reply(503), Reset())
    idp.default = serve(A)
    retry = default_retry(wait_initial=0.01, wait_max=0.02)
    client = httpx.AsyncClient(transport=AsyncResilientTransport(retry=retry))
    keys = JWKSKeys(f"{idp.url}/jwks", client=client, clock=ManualClock())
    try:
        assert await keys.fetch("a") is not None
        assert len(idp.requests) == 3
    finally:
        await keys.aclose()
    assert not client.is_closed  # the caller's client stays the caller's
    await client.aclose()


# -- issuers -------------------------------------------------------------------------------


async def test_each_issuer_has_its_own_set_and_unknown_issuers_cost_nothing(
    idp: FlakyServer,
) -> None:
    clock = ManualClock()
    idp.default = serve(A)
    for other in running():
        other.default = serve(B)
        urls = {"https://one": f"{idp.url}/jwks", "https://two": f"{other.url}/jwks"}
        async with JWKSKeys(urls, clock=clock) as keys:
            one = keys.get("a", "https://one")
            assert one is not None
            assert one.issuer == "https://one"
            assert keys.get("a", "https://two") is None
            assert keys.get("b", "https://two") is not None
            assert keys.get("a") is None  # per issuer: a token must say whose it is
            assert await keys.fetch("a", "https://evil") is None
            assert await keys.fetch("x", None) is None
            with pytest.raises(KeyError):
                await keys.refresh("https://evil")
            await keys.refresh("https://two")
            assert (len(idp.requests), len(other.requests)) == (1, 2)


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("urls", "changes", "message"),
    [
        ("http://idp.example/jwks", {}, "plain http"),
        ("ftp://idp.example/jwks", {}, "absolute https"),
        ("/jwks", {}, "absolute https"),
        (42, {}, "must be a URL or"),
        ({"https://idp.example": 42}, {}, "not a string"),
        ({}, {}, "at least one"),
        ({"": "https://idp.example/jwks"}, {}, "non-empty"),
        ("https://idp.example/jwks", {"refresh_interval": 0}, "refresh_interval"),
        ("https://idp.example/jwks", {"refetch_interval": -1}, "refetch_interval"),
        ("https://idp.example/jwks", {"max_stale": 0}, "max_stale"),
        ("https://idp.example/jwks", {"max_bytes": 0}, "max_bytes"),
        ("https://idp.example/jwks", {"min_refresh": 100, "max_refresh": 10}, "exceeds"),
    ],
)
def test_bad_configuration_is_refused(urls: Any, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JWKSKeys(urls, **changes)


@pytest.mark.parametrize(
    ("url", "changes"),
    [
        ("http://127.0.0.1:8080/jwks", {}),
        ("http://[::1]/jwks", {}),
        ("http://localhost/jwks", {}),
        ("http://idp.internal/jwks", {"allow_http": True}),
    ],
)
async def test_plain_http_is_accepted_on_loopback_or_when_allowed(
    url: str, changes: dict[str, Any]
) -> None:
    await JWKSKeys(url, **changes).aclose()
