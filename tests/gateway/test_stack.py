"""The gateway stack: layers in the seed's order, built with one call, working together."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from starlette.types import Receive, Scope, Send

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway.jwt import JWTAuthenticator, JWTVerifier
from sysdesign_kit.gateway.rbac_policy import Rule
from sysdesign_kit.gateway.stack import LAYER_ORDER, Gateway
from sysdesign_kit.gateway.static_keys import StaticKeys, hmac_key
from sysdesign_kit.principal import get_principal
from sysdesign_kit.ratelimit.tiers import tiered_limits

SECRET = b"s" * 32


class Probe:
    """The app behind the gateway: answers 200 and remembers what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, dict[str, str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = get_principal(scope)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append((principal.subject if principal else None, headers))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_layers_come_in_the_seeds_order() -> None:
    assert Gateway().layers == ("correlation_id",)
    assert Gateway(observability=True).layers == ("observability",)
    assert Gateway(correlation_id=False).layers == ()
    everything = Gateway(
        observability=True,
        correlation_id=True,
        authentication=True,
        rate_limit={"limits": tiered_limits()},
        authorization=True,
        body_limit=True,
        versioning={"versions": ["1"]},
        validation={"schemas": {}},
        principal_headers=True,
    )
    # Refusals wait below the limiter (counted); without a limiter nothing waits.
    deferred = ("deferred_authentication", "rate_limit", "answer_deferred")
    assert everything.layers == (*LAYER_ORDER[:2], *deferred, *LAYER_ORDER[4:])
    plain = Gateway(
        authentication=True, rate_limit={"limits": tiered_limits()}, count_refusals=False
    )
    assert plain.layers == ("correlation_id", "authentication", "rate_limit")
    assert Gateway(authentication=True).layers == ("correlation_id", "authentication")
    assert repr(everything).startswith("Gateway(observability, correlation_id, deferred_auth")


def test_bad_plans_are_refused() -> None:
    for needs in ("rate_limit", "versioning", "validation"):
        with pytest.raises(ConfigurationError, match=needs):
            Gateway(**{needs: True})
    with pytest.raises(ConfigurationError, match="mapping"):
        Gateway(authentication="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="authentication"):
        Gateway(authentication={"no_such_option": 1}).wrap(Probe())


async def test_a_request_goes_through_every_layer() -> None:
    clock = ManualClock()
    keys = StaticKeys(hmac_key(SECRET))
    verifier = JWTVerifier(keys, issuer="me", audience="api", clock=clock)
    probe = Probe()
    app = Gateway(
        authentication={"bearer": JWTAuthenticator(verifier)},
        rate_limit={"limits": tiered_limits(anonymous="5/minute", clock=clock)},
        authorization={
            "rules": [
                Rule("GET /items/{id}", scopes="read", anonymous=True),
                Rule("POST /items", scopes="write"),
            ]
        },
        principal_headers=True,
    ).wrap(probe)

    def token(scope: str) -> str:
        claims: dict[str, Any] = {"sub": "ada", "scope": scope, "iss": "me", "aud": "api"}
        claims["exp"] = clock.time() + 60
        return jwt.encode(claims, SECRET, algorithm="HS256")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        good = await client.get("/items/1", headers={"authorization": f"Bearer {token('read')}"})
        assert good.status_code == 200
        assert good.headers["x-request-id"]  # the correlation id layer, outermost
        subject, headers = probe.seen[-1]
        assert subject == "ada"
        assert headers["x-user-id"] == "ada"  # enriched for the upstream
        assert headers["x-request-id"] == good.headers["x-request-id"]  # forwarded

        spoofed = await client.get("/items/1", headers={"x-user-id": "root"})
        assert spoofed.status_code == 200
        assert "x-user-id" not in probe.seen[-1][1]  # a client cannot claim an identity

        malformed = await client.get("/items/1", headers={"authorization": "Bearer a.b"})
        assert malformed.status_code == 401  # a malformed token (RFC 6750 3.1)
        header = await client.get("/items/1", headers={"authorization": "Bearer  two-spaces"})
        assert header.status_code == 400  # a malformed request
        forged = jwt.encode({"sub": "eve", "exp": clock.time() + 60}, b"x" * 32)
        bad = await client.get("/items/1", headers={"authorization": f"Bearer {forged}"})
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"].startswith("Bearer")

        write = await client.post("/items", headers={"authorization": f"Bearer {token('read')}"})
        assert write.status_code == 403
        assert 'error="insufficient_scope"' in write.headers["www-authenticate"]

        # Refused credentials were counted as anonymous requests (held back below the
        # limiter): the spoofed, malformed, mangled and forged ones spent 4 of 5.
        assert "ratelimit" in bad.headers
        anonymous = [await client.get("/items/2") for _ in range(2)]
        assert [r.status_code for r in anonymous] == [200, 429]
        flood = await client.get("/items/1", headers={"authorization": f"Bearer {forged}"})
        assert flood.status_code == 429  # guessing tokens is throttled too


class Counting:
    """The bearer authenticator, counting the credentials it is asked to verify."""

    method = "jwt"

    def __init__(self, inner: JWTAuthenticator) -> None:
        self.inner = inner
        self.verified = 0

    def remembered(self, credential: str) -> Any:
        return self.inner.remembered(credential)

    async def authenticate(self, credential: str) -> Any:
        self.verified += 1
        return await self.inner.authenticate(credential)


@pytest.mark.parametrize("observed", [False, True])  # stacked, and fused in front
async def test_a_client_past_its_ip_limit_costs_no_signature_check(observed: bool) -> None:
    clock = ManualClock()
    verifier = JWTVerifier(StaticKeys(hmac_key(SECRET)), issuer="me", audience="api", clock=clock)
    bearer = Counting(JWTAuthenticator(verifier))
    limits = tiered_limits(anonymous="100/minute", per_ip="3/minute", clock=clock)
    app = Gateway(
        observability={"access_log": False} if observed else None,
        authentication={"bearer": bearer},
        rate_limit={"limits": limits},
    ).wrap(Probe())
    claims: dict[str, Any] = {"sub": "ada", "iss": "me", "aud": "api"}
    good = jwt.encode({**claims, "exp": clock.time() + 600}, SECRET, algorithm="HS256")
    forged = jwt.encode({**claims, "exp": clock.time() + 600}, b"x" * 32, algorithm="HS256")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:

        async def get(token: str) -> int:
            response = await client.get("/", headers={"authorization": f"Bearer {token}"})
            return response.status_code

        assert [await get(forged) for _ in range(3)] == [401, 401, 401]
        assert bearer.verified == 3
        assert [await get(forged) for _ in range(20)] == [429] * 20
        assert await get(good) == 429  # the IP limit refuses whoever sends from there
        assert bearer.verified == 3  # none of those 21 was verified
        clock.advance(60)
        assert await get(good) == 200
        assert bearer.verified == 4


def test_the_package_imports_its_layers_on_first_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, sysdesign_kit.gateway as g\n"
        "assert 'jwt' not in sys.modules and 'httpx' not in sys.modules\n"
        "assert g.Gateway is g.Gateway and 'sysdesign_kit.gateway.stack' in sys.modules\n"
        "assert 'Gateway' in dir(g)\n"
        "try:\n    g.Nope\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
