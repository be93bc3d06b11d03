# No `from __future__ import annotations`: FastAPI must see the Annotated dependencies,
# which are local to make_app, at definition time.
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.ratelimit import RateLimitDecision, RateLimiter, RateLimitMiddleware
from sysdesign_kit.ratelimit import tiered_limits as make_tiers
from sysdesign_kit.ratelimit.fastapi import RateLimit


def make_app(clock: ManualClock) -> FastAPI:
    per_ip = RateLimiter("2/minute", name="per-ip", clock=clock)
    per_user = RateLimiter("3/minute", name="per-user", clock=clock)
    app = FastAPI()

    @app.get("/items", dependencies=[Depends(RateLimit(per_ip, legacy_headers=True))])
    async def items() -> dict[str, str]:
        return {"ok": "yes"}

    by_user = RateLimit(per_user, key=lambda request: request.headers.get("x-user", "-"))

    @app.get("/me")
    async def me(decision: Annotated[RateLimitDecision, Depends(by_user)]) -> dict[str, int]:
        return {"remaining": decision.remaining}

    huge_key = RateLimit(per_user, key=lambda request: "\u00e9" * 9000)

    @app.get("/bad")
    async def bad(decision: Annotated[RateLimitDecision, Depends(huge_key)]) -> dict[str, int]:
        return {"remaining": decision.remaining}

    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_dependency_allows_then_429_with_headers(clock: ManualClock) -> None:
    async with client_for(make_app(clock)) as client:
        first = await client.get("/items")
        assert first.status_code == 200
        assert first.headers["ratelimit-policy"] == '"per-ip";q=2;w=60'
        assert first.headers["ratelimit"] == '"per-ip";r=1;t=30'
        assert first.headers["x-ratelimit-remaining"] == "1"
        assert (await client.get("/items")).status_code == 200
        denied = await client.get("/items")
        assert denied.status_code == 429
        assert denied.headers["retry-after"] == "30"
        assert denied.headers["ratelimit"] == '"per-ip";r=0;t=30'
        assert denied.json() == {"detail": "rate limit per-ip exceeded; retry in 30 s"}
        clock.advance(30)
        assert (await client.get("/items")).status_code == 200


async def test_key_from_request_and_decision_value(clock: ManualClock) -> None:
    async with client_for(make_app(clock)) as client:
        alice = [await client.get("/me", headers={"x-user": "alice"}) for _ in range(4)]
        assert [r.status_code for r in alice] == [200, 200, 200, 429]
        assert [r.json() for r in alice[:3]] == [{"remaining": n} for n in (2, 1, 0)]
        assert (await client.get("/me", headers={"x-user": "bob"})).status_code == 200


async def test_oversized_key_is_hashed_not_a_500(clock: ManualClock) -> None:
    async with client_for(make_app(clock)) as client:
        assert (await client.get("/bad")).json() == {"remaining": 2}


async def test_constant_key_and_with_middleware(clock: ManualClock) -> None:
    app = FastAPI()
    shared = RateLimiter("1/minute", name="export", clock=clock)

    @app.get("/export", dependencies=[Depends(RateLimit(shared, key="global"))])
    async def export(request: Request) -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(RateLimitMiddleware, limits=make_tiers(clock=clock))
    async with client_for(app) as client:
        first = await client.get("/export")
        assert first.status_code == 200
        assert first.headers.get_list("ratelimit") == [
            '"export";r=0;t=60',
            '"anonymous";r=19;t=3, "ip";r=499;t=1',
        ]
        assert (await client.get("/export")).status_code == 429


def test_bad_key_is_a_configuration_error(clock: ManualClock) -> None:
    with pytest.raises(ConfigurationError):
        RateLimit(RateLimiter("1/s", clock=clock), key=42)  # type: ignore[arg-type]
