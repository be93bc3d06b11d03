"""The reference system's JWT authentication and RBAC (on by default in ``create_app``).

The demo's contract: tokens from `DemoKeys` set the principal the rate limiter tiers by;
``GET /api/v1/products/{id}`` needs scope ``read`` when a token is given (anonymous reads
allowed), ``POST /api/v1/orders`` needs ``write``, ``DELETE /api/v1/products/{id}`` needs
role ``admin``; the ``X-API-Key`` keys keep working. Tokens are judged on the app's clock, so
they are minted at the manual clock's time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from reference_system.app import create_app
from reference_system.demo_keys import DemoKeys, default_keys
from sysdesign_kit.clock import ManualClock

PRODUCT = "/api/v1/products/1"
#: The `clock` fixture's wall time: tokens are issued "now" on the app's clock.
NOW = ManualClock().time()


@pytest.fixture
async def client(clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(clock=clock)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.30", 50_000))
    async with (
        app.state.health,
        httpx.AsyncClient(transport=transport, base_url="http://reference.test") as client,
    ):
        yield client
    await app.state.payments.aclose()


def _bearer(
    *, tier: str = "free", roles: tuple[str, ...] = (), scope: str = "read"
) -> dict[str, str]:
    token = default_keys().mint(tier=tier, roles=roles, scope=scope, now=NOW)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "tier"),
    [
        ({}, "anonymous"),
        (_bearer(tier="free", scope="read"), "free"),
        (_bearer(tier="premium", scope="read write"), "premium"),
        ({"X-API-Key": "demo-premium-key"}, "premium"),
    ],
)
async def test_reads_are_tiered_by_the_principal(
    client: httpx.AsyncClient, headers: dict[str, str], tier: str
) -> None:
    response = await client.get(PRODUCT, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["ratelimit-policy"].startswith(f'"{tier}"')
    stages = [entry.split(";")[0].strip() for entry in response.headers["server-timing"].split(",")]
    assert stages == ["auth", "ratelimit", "app", "total"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", PRODUCT, _bearer(scope="write"), 403),
        ("POST", "/api/v1/orders", {}, 401),
        ("POST", "/api/v1/orders", _bearer(scope="read"), 403),
        ("DELETE", PRODUCT, {}, 401),
        ("DELETE", PRODUCT, _bearer(tier="premium", scope="read write admin"), 403),
        ("DELETE", PRODUCT, {"X-API-Key": "demo-admin-key"}, 403),  # an admin scope, no role
    ],
)
async def test_rules_refuse_what_the_principal_may_not_do(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = await client.request(method, path, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    elif method != "DELETE":  # a missing scope is RFC 6750's insufficient_scope; a role is not
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/api/v1/orders", _bearer(scope="write"), 201),
        ("DELETE", PRODUCT, _bearer(roles=("admin",), scope="read"), 204),
    ],
)
async def test_allowed_requests_reach_the_app(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    body = {"items": [{"product_id": 1}]} if method == "POST" else None
    response = await client.request(method, path, headers=headers, json=body)
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "token",
    [
        DemoKeys.generate().mint(tier="premium", now=NOW),  # another key, same kid shape
        "not-a-jwt",
        default_keys().mint(ttl=1, now=1_000_000),  # long expired
        default_keys().mint(now=NOW + 3600),  # issued in the app's future
    ],
)
async def test_bad_tokens_are_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(PRODUCT, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (400, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"


async def test_jwks_is_exempt_from_the_rate_limits(client: httpx.AsyncClient) -> None:
    answers = [await client.get("/.well-known/jwks.json") for _ in range(30)]  # anonymous: 20
    assert {answer.status_code for answer in answers} == {200}
    assert "ratelimit" not in answers[-1].headers


async def test_refused_tokens_count_against_the_anonymous_limit(
    client: httpx.AsyncClient,
) -> None:
    forged = {"Authorization": f"Bearer {DemoKeys.generate().mint(now=NOW)}"}
    answers = [await client.get(PRODUCT, headers=forged) for _ in range(21)]
    assert [answer.status_code for answer in answers] == [401] * 20 + [429]
    assert answers[0].headers["ratelimit"].startswith('"anonymous";r=19;')
    assert 'error="invalid_token"' in answers[0].headers["www-authenticate"]
    assert answers[-1].json()["violated-policies"] == ["anonymous"]
    # A good token is then judged on its own tier, not the address's spent anonymous quota.
    assert (await client.get(PRODUCT, headers=_bearer())).status_code == 200
