"""OAuth 2.0 token introspection against a real local HTTP server (tests/transport/flaky_server)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from sysdesign_kit.breaker import CountWindow
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    CircuitOpen,
    ConfigurationError,
)
from sysdesign_kit.gateway.authentication import AuthenticationMiddleware
from sysdesign_kit.gateway.authenticator import Authenticator
from sysdesign_kit.gateway.introspection import IntrospectionAuthenticator
from tests.gateway.auth_support import EchoApp, call
from tests.transport.flaky_server import FlakyServer, Reply, Reset, Stall, running


@pytest.fixture
def idp() -> Iterator[FlakyServer]:
    yield from running()


def answer(**claims: Any) -> Reply:
    return Reply(200, json.dumps(claims).encode(), {"content-type": "application/json"})


@pytest.fixture
async def make(idp: FlakyServer, clock: ManualClock) -> AsyncIterator[Any]:
    made: list[IntrospectionAuthenticator] = []

    def factory(**kwargs: Any) -> IntrospectionAuthenticator:
        options: dict[str, Any] = {
            "client_id": "gate way",
            "client_secret": "s3cret:&",
            "clock": clock,
            "timeout": 2.0,
        }
        options.update(kwargs)
        authenticator = IntrospectionAuthenticator(idp.url + "/introspect", **options)
        made.append(authenticator)
        return authenticator

    yield factory
    for authenticator in made:
        await authenticator.aclose()


async def test_active_token_becomes_a_principal(
    make: Any, idp: FlakyServer, clock: ManualClock
) -> None:
    introspection = make(audience="reference-system", issuer="https://idp")
    assert isinstance(introspection, Authenticator)
    idp.script(
        answer(
            active=True,
            sub="alice",
            scope="read write",
            client_id="app",
            roles=["admin"],
            tier="premium",
            tenant="acme",
            exp=clock.time() + 300,
            iss="https://idp",
            aud=["other", "reference-system"],
        )
    )
    principal = await introspection.authenticate("opaque-token-1")
    assert principal.subject == "alice"
    assert principal.scopes == {"read", "write"}
    assert principal.roles == {"admin"}
    assert principal.tier == "premium"
    assert principal.tenant == "acme"
    assert principal.method == "introspection"
    assert principal.claims["client_id"] == "app"
    (seen,) = idp.requests
    assert seen.method == "POST"
    assert seen.path == "/introspect"
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(seen.body.decode()) == {
        "token": ["opaque-token-1"],
        "token_type_hint": ["access_token"],
    }
    # RFC 6749 2.3.1: id and secret are form-encoded before Basic encoding.
    basic = base64.b64decode(seen.headers["authorization"].removeprefix("Basic "))
    assert basic == b"gate%20way:s3cret%3A%26"


async def test_cached_until_exp(make: Any, idp: FlakyServer, clock: ManualClock) -> None:
    introspection = make(leeway=0)
    idp.script(answer(active=True, sub="alice", exp=clock.time() + 30))
    for _ in range(3):
        await introspection.authenticate("tok")
    assert len(idp.requests) == 1
    clock.advance(29.9)
    await introspection.authenticate("tok")
    assert len(idp.requests) == 1
    clock.advance(0.2)
    idp.script(answer(active=False))
    with pytest.raises(AuthenticationFailed):
        await introspection.authenticate("tok")
    assert len(idp.requests) == 2


async def test_cache_age_is_capped(make: Any, idp: FlakyServer, clock: ManualClock) -> None:
    introspection = make(max_cache_ttl=10)
    idp.default = answer(active=True, sub="alice", exp=clock.time() + 3600)
    await introspection.authenticate("tok")
    clock.advance(9)
    await introspection.authenticate("tok")
    assert len(idp.requests) == 1
    clock.advance(1)
    await introspection.authenticate("tok")
    assert len(idp.requests) == 2
    no_exp = make(max_cache_ttl=10)
    idp.default = answer(active=True, sub="bob")
    await no_exp.authenticate("tok2")
    await no_exp.authenticate("tok2")
    assert len(idp.requests) == 3


async def test_inactive_is_invalid_token_and_cached_briefly(
    make: Any, idp: FlakyServer, clock: ManualClock
) -> None:
    introspection = make(negative_ttl=5)
    idp.default = answer(active=False)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed) as info:
            await introspection.authenticate("revoked")
        assert info.value.error == "invalid_token"
        assert info.value.description == "invalid token"
    assert len(idp.requests) == 1
    clock.advance(5)
    with pytest.raises(AuthenticationFailed):
        await introspection.authenticate("revoked")
    assert len(idp.requests) == 2
    never = make(negative_ttl=0)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await never.authenticate("revoked")
    assert len(idp.requests) == 4


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"active": "true", "sub": "a"}, "not active"),
        ({"active": 1, "sub": "a"}, "not active"),
        ({"sub": "a"}, "not active"),
        ({"active": True, "sub": "a", "exp": 1_700_000_000}, "expired"),  # ManualClock's past
        ({"active": True, "sub": "a", "exp": "soon"}, "exp"),
        ({"active": True, "sub": "a", "exp": 10**400}, "exp"),
        ({"active": True, "sub": "a", "nbf": 4_000_000_000}, "not yet valid"),
        ({"active": True, "sub": "a", "iss": "https://evil"}, "issuer"),
        ({"active": True, "sub": "a", "iss": "https://idp", "aud": "other"}, "audience"),
        ({"active": True, "sub": "a", "iss": "https://idp", "aud": ["x"]}, "audience"),
        ({"active": True, "iss": "https://idp", "aud": "api"}, "no subject"),
        ({"active": True, "sub": 5, "iss": "https://idp", "aud": "api"}, "no subject"),
        ({"active": True, "sub": "a", "iss": "https://idp", "aud": "api", "scope": 3}, "scope"),
        ({"active": True, "sub": "a", "iss": "https://idp", "aud": "api", "roles": [1]}, "roles"),
        ({"active": True, "sub": "a", "iss": "https://idp", "aud": "api", "tier": 1}, "tier"),
        ({"active": True, "sub": "a", "iss": "https://idp", "aud": "api", "tenant": 1}, "tenant"),
    ],
)
async def test_refused_answers(
    make: Any, idp: FlakyServer, claims: dict[str, Any], reason: str
) -> None:
    introspection = make(issuer="https://idp", audience="api")
    idp.script(answer(**claims))
    with pytest.raises(AuthenticationFailed, match=reason) as info:
        await introspection.authenticate("tok")
    assert info.value.status == 401


async def test_client_id_is_the_subject_without_sub(make: Any, idp: FlakyServer) -> None:
    idp.script(answer(active=True, client_id="machine", scope=["read"]))
    principal = await make(token_type_hint=None).authenticate("tok")
    assert principal.subject == "machine"
    assert principal.scopes == {"read"}
    assert "token_type_hint" not in idp.requests[0].body.decode()


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, b"oops"),
        Reply(401, b'{"error":"invalid_client"}'),
        Reply(200, b"<html>"),
        Reply(200, b"[true]"),
        Reply(200, b"{" + b" " * 70_000 + b"}"),
        Reset(),
    ],
    ids=["500", "401", "html", "list", "huge", "reset"],
)
async def test_provider_trouble_is_backend_unavailable_and_not_cached(
    make: Any, idp: FlakyServer, reply: Reply | Reset
) -> None:
    introspection = make()
    idp.script(reply)
    with pytest.raises(BackendUnavailable):
        await introspection.authenticate("tok")
    idp.script(answer(active=True, sub="alice"))
    assert (await introspection.authenticate("tok")).subject == "alice"


async def test_timeout_is_bounded(make: Any, idp: FlakyServer) -> None:
    introspection = make(timeout=0.3)
    idp.script(Stall(5))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        await introspection.authenticate("tok")
    assert time.monotonic() - started < 3  # generous: 0.3 s asked
    assert info.value.__cause__ is not None


async def test_unreachable_endpoint(clock: ManualClock) -> None:
    # A port nobody listens on: bind and close one.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    introspection = IntrospectionAuthenticator(
        f"http://127.0.0.1:{port}/i", client_id="c", client_secret="s", clock=clock
    )
    with pytest.raises(BackendUnavailable):
        await introspection.authenticate("tok")
    await introspection.aclose()


async def test_breaker_opens_and_middleware_answers_503(
    make: Any, idp: FlakyServer, clock: ManualClock
) -> None:
    introspection = make(
        breaker_settings={"minimum_calls": 2, "window": CountWindow(2), "open_for": 30}
    )
    idp.default = Reply(503, b"down")
    for token in ("a", "b"):
        with pytest.raises(BackendUnavailable):
            await introspection.authenticate(token)
    with pytest.raises(BackendUnavailable) as info:
        await introspection.authenticate("c")
    assert isinstance(info.value.__cause__, CircuitOpen)
    assert len(idp.requests) == 2  # the open breaker asked nobody
    app = EchoApp()
    middleware = AuthenticationMiddleware(app, bearer=introspection)
    response = await call(middleware, app, [(b"authorization", b"Bearer d")])
    assert response.status == 503
    assert response.header(b"retry-after") == [b"30"]
    assert response.json()["detail"] == "authentication is temporarily unavailable"
    clock.advance(30)
    idp.default = answer(active=True, sub="alice")
    response = await call(middleware, app, [(b"authorization", b"Bearer d")])
    assert response.status == 200
    assert response.principal is not None
    assert response.principal.subject == "alice"


async def test_concurrent_requests_share_one_call(make: Any, idp: FlakyServer) -> None:
    introspection = make()
    idp.script(Stall(0.3, answer(active=True, sub="alice")))
    principals = await asyncio.gather(*(introspection.authenticate("tok") for _ in range(5)))
    assert {p.subject for p in principals} == {"alice"}
    assert len(idp.requests) == 1


async def test_a_cancelled_caller_does_not_cancel_the_others(make: Any, idp: FlakyServer) -> None:
    introspection = make()
    idp.script(Stall(0.3, answer(active=True, sub="alice")))
    first = asyncio.ensure_future(introspection.authenticate("tok"))
    second = asyncio.ensure_future(introspection.authenticate("tok"))
    await asyncio.sleep(0.05)
    first.cancel()
    assert (await second).subject == "alice"
    assert (await introspection.authenticate("tok")).subject == "alice"
    assert len(idp.requests) == 1


async def test_cache_is_bounded(make: Any, idp: FlakyServer) -> None:
    introspection = make(cache_size=2)
    idp.default = answer(active=True, sub="alice")
    for n in range(5):
        await introspection.authenticate(f"tok{n}")
    assert len(introspection._cache) == 2
    assert all(b"tok" not in key for key in introspection._cache)  # digests, not tokens


async def test_long_token_is_refused_without_asking(make: Any, idp: FlakyServer) -> None:
    with pytest.raises(AuthenticationFailed, match="too long"):
        await make(max_token_length=10).authenticate("x" * 11)
    with pytest.raises(AuthenticationFailed, match="ASCII"):
        await make().authenticate("caf\u00e9\udc80")
    assert idp.requests == []


async def test_given_client_is_used_and_left_open(idp: FlakyServer) -> None:
    import httpx

    idp.script(answer(active=True, sub="alice"))
    async with httpx.AsyncClient() as client:
        introspection = IntrospectionAuthenticator(
            idp.url, client_id="c", client_secret="s", client=client
        )
        assert (await introspection.authenticate("tok")).subject == "alice"
        await introspection.aclose()
        assert not client.is_closed


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "match"),
    [
        ("ftp://idp/i", {}, "http"),
        ("not a url", {}, "http"),
        ("http://idp.example.com/i", {}, "clear"),
        ("https://idp/i", {"client_id": ""}, "client_id"),
        ("https://idp/i", {"leeway": -1}, "leeway"),
        ("https://idp/i", {"max_cache_ttl": float("inf")}, "max_cache_ttl"),
        ("https://idp/i", {"negative_ttl": True}, "negative_ttl"),
        ("https://idp/i", {"timeout": 0}, "timeout"),
        ("https://idp/i", {"cache_size": 0}, "cache_size"),
        ("https://idp/i", {"max_token_length": 0}, "max_token_length"),
    ],
)
def test_configuration_errors(endpoint: str, kwargs: dict[str, Any], match: str) -> None:
    options: dict[str, Any] = {"client_id": "c", "client_secret": "s"}
    options.update(kwargs)
    with pytest.raises(ConfigurationError, match=match):
        IntrospectionAuthenticator(endpoint, **options)


async def test_plain_http_allowed_on_loopback_or_when_asked() -> None:
    for endpoint, allow in (("http://localhost/i", False), ("http://[::1]/i", False),
                            ("http://idp.example.com/i", True)):  # fmt: skip
        await IntrospectionAuthenticator(
            endpoint, client_id="c", client_secret="s", allow_http=allow
        ).aclose()
