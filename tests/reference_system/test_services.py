"""The services behind the gateway, in-process: orders, users, and deleting products.

Tokens are minted at the manual clock's time (the app judges them on its clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from reference_system.app import create_app
from reference_system.demo_keys import default_keys
from sysdesign_kit.clock import ManualClock

PROBLEM = "application/problem+json"
NOW = ManualClock().time()
ORDERS = "/api/v1/orders"


def bearer(
    sub: str = "alice", *, scope: str = "read write", roles: tuple[str, ...] = ()
) -> dict[str, str]:
    token = default_keys().mint(sub=sub, scope=scope, roles=roles, now=NOW)
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer("root", scope="read write", roles=("admin",))


@pytest.fixture
async def app(clock: ManualClock) -> AsyncIterator[Starlette]:
    app = create_app(clock=clock)
    async with app.state.health:
        yield app
    await app.state.payments.aclose()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.31", 50_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        yield c


async def _order(client: httpx.AsyncClient, body: Any, headers: dict[str, str]) -> httpx.Response:
    return await client.post(ORDERS, json=body, headers=headers)


async def test_an_order_is_priced_stored_and_read_back(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    body = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 2}]}
    placed = await _order(client, body, bearer())
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert placed.headers["location"] == f"{ORDERS}/1"
    assert (order["id"], order["customer"], order["status"]) == (1, "alice", "created")
    assert order["items"] == [
        {"product_id": 1, "name": "Mechanical keyboard", "quantity": 2, "unit_price": 89.99},
        {"product_id": 2, "name": "Wireless mouse", "quantity": 1, "unit_price": 29.5},
    ]
    assert (order["total"], order["currency"]) == (209.48, "EUR")
    assert order["created_at"] == clock.time()
    second = await _order(client, {"items": [{"product_id": 3}]}, bearer())
    assert second.json()["id"] == 2  # ids count up: the same on every run

    mine = await client.get(f"{ORDERS}/1", headers=bearer(scope="read"))
    assert (mine.status_code, mine.json()) == (200, order)
    assert (await client.get(f"{ORDERS}/1", headers=ADMIN)).status_code == 200
    # Someone else's order does not exist for them; nor does one never placed.
    for path, headers in [(f"{ORDERS}/1", bearer("bob")), (f"{ORDERS}/99", bearer())]:
        missing = await client.get(path, headers=headers)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"items": [{"product_id": 1, "quantity": 0}]}, "$.items[0].quantity"),
        ({"items": [{"product_id": 1, "quantity": 101}]}, "$.items[0].quantity"),
        ({"items": [{"product_id": "1"}]}, "$.items[0].product_id"),
        ({"items": [{"quantity": 1}]}, "$.items[0].product_id"),
        ({"items": []}, "$.items"),
        ({"items": [{"product_id": 1}], "coupon": "FREE"}, "$"),
        ({}, "$.items"),
    ],
)
async def test_an_order_that_does_not_fit_the_schema_is_422_with_its_path(
    client: httpx.AsyncClient, body: Any, path: str
) -> None:
    response = await _order(client, body, bearer())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    [error] = response.json()["errors"]
    assert (error["location"], error["path"]) == ("body", path)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"items": [{"product_id": 1}]}', "text/plain", 415),
        (b'{"items": [' + b'{"product_id": 1},' * 2000 + b"]}", "application/json", 413),
    ],
)
async def test_bodies_are_checked_before_the_service(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int
) -> None:
    headers = {**bearer(), "Content-Type": content_type}
    response = await client.post(ORDERS, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_order_checks_come_after_rbac(client: httpx.AsyncClient) -> None:
    # A caller who may not order learns that, not what a valid order looks like.
    assert (await _order(client, {}, bearer(scope="read"))).status_code == 403
    assert (await _order(client, {}, {})).status_code == 401
    assert (await client.get(f"{ORDERS}/1")).status_code == 401


async def test_an_unknown_product_is_not_ordered(client: httpx.AsyncClient, app: Starlette) -> None:
    response = await _order(client, {"items": [{"product_id": 1}, {"product_id": 999}]}, bearer())
    assert response.status_code == 422
    assert response.json()["detail"] == "no product with id 999"
    assert app.state.orders.orders == {}


async def test_users_see_their_own_profile_and_admins_anyone_s(client: httpx.AsyncClient) -> None:
    await _order(client, {"items": [{"product_id": 4}]}, bearer())
    me = await client.get("/api/v1/users/me", headers=bearer(scope="read"))
    assert me.status_code == 200
    assert me.json() == {
        "id": "alice",
        "tier": "free",
        "roles": [],
        "scopes": ["read"],
        "auth": "jwt",
        "orders": 1,
    }
    by_name = await client.get("/api/v1/users/alice", headers=bearer(scope="read"))
    assert by_name.json() == me.json()
    key = await client.get("/api/v1/users/me", headers={"X-API-Key": "demo-free-key"})
    assert key.json()["id"] == "free-user-1"
    assert key.json()["auth"] == "api_key"

    other = await client.get("/api/v1/users/alice", headers=bearer("bob"))
    assert other.status_code == 403
    assert (await client.get("/api/v1/users/alice", headers=ADMIN)).json()["orders"] == 1
    assert (await client.get("/api/v1/users/premium-user-2", headers=ADMIN)).status_code == 200
    assert (await client.get("/api/v1/users/nobody", headers=ADMIN)).status_code == 404
    assert (await client.get("/api/v1/users/me")).status_code == 401
    denied = await client.get("/api/v1/users/me", headers=bearer(scope="write"))
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]


async def test_deleting_a_product_drops_its_cached_copy(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    path = "/api/v1/products/7"
    first = await client.get(path)
    cached = await client.get(path)
    assert (first.status_code, cached.headers["x-cache"]) == (200, "HIT")
    assert (await client.delete(path, headers=bearer(scope="read write admin"))).status_code == 403
    deleted = await client.delete(path, headers=ADMIN)
    assert (deleted.status_code, deleted.content) == (204, b"")
    gone = await client.get(path)
    assert (gone.status_code, gone.headers["x-cache"]) == (404, "MISS")  # asked the DB again
    assert (await client.delete(path, headers=ADMIN)).status_code == 404
    assert 7 not in app.state.products.db.catalog
    assert (await _order(client, {"items": [{"product_id": 7}]}, bearer())).status_code == 422


async def test_deleting_while_the_database_is_down_is_503(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    app.state.products.db.down = True
    response = await client.delete("/api/v1/products/8", headers=ADMIN)
    assert response.status_code == 503
    app.state.products.db.down = False
    assert (await client.get("/api/v1/products/8")).status_code == 200


async def test_without_the_gateway_the_services_still_check(clock: ManualClock) -> None:
    app = create_app(clock=clock, jwt_auth=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        key = {"X-API-Key": "demo-admin-key"}  # the admin scope, not the role
        assert (await c.delete("/api/v1/products/1", headers=key)).status_code == 403
        assert (await c.post(ORDERS, json={"items": [{"product_id": 1}]})).status_code == 401
        placed = await c.post(ORDERS, json={"items": [{"product_id": 1}]}, headers=key)
        assert placed.status_code == 201  # no RBAC rules: any principal may order
    await app.state.payments.aclose()


async def test_the_order_service_alone_decodes_its_body(app: Starlette) -> None:
    # Without the gateway's validation in front, the service checks the body itself.
    from sysdesign_kit.principal import Principal, set_principal

    orders = app.state.orders

    async def as_alice(scope: Any, receive: Any, send: Any) -> None:
        set_principal(scope, Principal("alice"))
        await Starlette(routes=orders.routes)(scope, receive, send)

    transport = httpx.ASGITransport(app=as_alice)
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        bad = await c.post(ORDERS, json={"items": [{"product_id": 1, "quantity": 0}]})
        good = await c.post(ORDERS, json={"items": [{"product_id": 1, "quantity": 3}]})
    assert bad.status_code == 422
    assert "$.items[0].quantity" in bad.json()["detail"]
    assert (good.status_code, good.json()["total"]) == (201, 269.97)
