"""The product service reads through its cache: hits, a stampede, stale answers, admin switches."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from reference_system.app import create_app
from reference_system.product_db import CATALOG, DatabaseUnavailable, ProductDB
from reference_system.products import PRODUCT_CACHE, ProductService
from sysdesign_kit.clock import ManualClock, VirtualClock
from tests.reference_system.conftest import ClientFactory

PREMIUM = {"X-API-Key": "demo-premium-key"}
ADMIN = {"X-API-Key": "demo-admin-key"}
TTL = PRODUCT_CACHE.ttl
SWR = PRODUCT_CACHE.stale_while_revalidate


def _service(app: Starlette) -> ProductService:
    service: ProductService = app.state.products
    return service


async def test_a_product_is_read_once_then_served_from_the_cache(
    app: Starlette, client_from: ClientFactory
) -> None:
    client = client_from(**PREMIUM)
    first, second = [await client.get("/api/v1/products/1") for _ in range(2)]
    for response in (first, second):
        assert response.status_code == 200
        assert response.json() == {
            "id": 1,
            "name": "Mechanical keyboard",
            "price": 89.99,
            "currency": "EUR",
        }
        assert response.headers["cache-control"] == "max-age=300"
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["MISS", "HIT"]
    assert _service(app).db.queries == 1


async def test_unknown_ids_are_remembered_for_the_negative_ttl(
    app: Starlette, client_from: ClientFactory, clock: ManualClock
) -> None:
    client = client_from(**PREMIUM)
    answers = [await client.get("/api/v1/products/999") for _ in range(3)]
    assert [a.status_code for a in answers] == [404] * 3
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT", "HIT"]
    assert answers[0].headers["content-type"] == "application/problem+json"
    assert "cache-control" not in answers[0].headers
    assert _service(app).db.queries == 1
    clock.advance(PRODUCT_CACHE.negative_ttl)
    assert (await client.get("/api/v1/products/999")).headers["x-cache"] == "MISS"
    assert _service(app).db.queries == 2


async def test_a_stampede_on_a_cold_product_makes_one_query() -> None:
    # Virtual time: the 50 ms query passes as the event loop turns, while the 200 requests
    # arrive; none of them waits in real time.
    app = create_app(clock=VirtualClock())
    service = _service(app)
    service.db.latency = 0.05
    transport = httpx.ASGITransport(app=app, client=("198.51.100.50", 40_000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://reference.test", headers=PREMIUM
    ) as client:
        answers = await asyncio.gather(*(client.get("/api/v1/products/7") for _ in range(200)))
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["id"] for a in answers} == {7}
    assert service.db.queries == 1
    assert (service.stats.lookups["miss"], service.stats.lookups["coalesced"]) == (1, 199)
    assert sorted({a.headers["x-cache"] for a in answers}) == ["COALESCED", "MISS"]
    await app.state.payments.aclose()


async def test_a_stampede_waits_for_the_one_slow_query(
    app: Starlette, client_from: ClientFactory, clock: ManualClock
) -> None:
    # A manual clock: the query is still running until the test moves time.
    service = _service(app)
    service.db.latency = 0.05
    client = client_from(**PREMIUM)
    requests = [asyncio.ensure_future(client.get("/api/v1/products/8")) for _ in range(50)]
    for _ in range(10_000):  # event-loop turns, until every request waits on the query
        if service.stats.lookups["coalesced"] == 49 and clock.pending_sleepers:
            break
        await asyncio.sleep(0)
    assert not any(request.done() for request in requests)
    clock.advance(0.05)
    answers = await asyncio.gather(*requests)
    assert [a.status_code for a in answers] == [200] * 50
    assert service.db.queries == 1


async def test_past_the_ttl_the_stale_copy_answers_while_one_query_refreshes_it(
    app: Starlette, client_from: ClientFactory, clock: ManualClock
) -> None:
    service = _service(app)
    client = client_from(**PREMIUM)
    await client.get("/api/v1/products/2")
    clock.advance(TTL + SWR / 2)
    stale = await client.get("/api/v1/products/2")
    assert (stale.status_code, stale.headers["x-cache"]) == (200, "STALE")
    await service.cache.drain()
    assert service.db.queries == 2  # the background refresh
    assert (await client.get("/api/v1/products/2")).headers["x-cache"] == "HIT"


async def test_while_the_db_is_down_expired_products_are_served_stale(
    app: Starlette, client_from: ClientFactory, clock: ManualClock
) -> None:
    service = _service(app)
    client = client_from(**PREMIUM)
    fresh = await client.get("/api/v1/products/3")
    clock.advance(TTL + SWR + 1)  # past the stale-while-revalidate minute
    service.db.down = True
    stale = await client.get("/api/v1/products/3")
    assert (stale.status_code, stale.headers["x-cache"]) == (200, "STALE")
    assert stale.json() == fresh.json()
    assert stale.headers["cache-control"] == "max-age=300"
    never_cached = await client.get("/api/v1/products/4")
    assert never_cached.status_code == 503
    assert never_cached.headers["content-type"] == "application/problem+json"
    assert "database is unavailable" in never_cached.json()["detail"]
    assert (service.db.queries, service.db.failed) == (3, 2)
    assert service.stats.lookups["stale"] == 1
    service.db.down = False
    again = await client.get("/api/v1/products/3")
    assert (again.status_code, again.headers["x-cache"]) == (200, "MISS")
    assert (await client.get("/api/v1/products/3")).headers["x-cache"] == "HIT"


async def test_past_the_stale_if_error_window_an_outage_is_a_503(
    app: Starlette, client_from: ClientFactory, clock: ManualClock
) -> None:
    client = client_from(**PREMIUM)
    await client.get("/api/v1/products/5")
    clock.advance(TTL + PRODUCT_CACHE.stale_if_error)
    _service(app).db.down = True
    assert (await client.get("/api/v1/products/5")).status_code == 503


async def test_the_db_fails_at_once_when_down_and_counts_its_queries() -> None:
    clock = ManualClock()
    db = ProductDB(clock, latency=0.05)
    db.down = True
    with pytest.raises(DatabaseUnavailable):
        await db.get(1)
    db.down = False
    query = asyncio.ensure_future(db.get(123))
    await asyncio.sleep(0)
    assert not query.done()
    clock.advance(0.05)
    assert await query == CATALOG[123]
    assert await ProductDB(clock).get(4242) is None
    assert (db.queries, db.failed) == (2, 1)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/products/db-outage", {"down": True}),
        ("/admin/products/db-latency", {"seconds": 0.5}),
        ("/admin/products/cache/expire", None),
    ],
)
@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), (PREMIUM, 403), ({"X-API-Key": "nope"}, 401)]
)
async def test_admin_switches_need_the_admin_scope(
    app: Starlette,
    client_from: ClientFactory,
    path: str,
    body: object,
    headers: dict[str, str],
    status: int,
) -> None:
    response = await client_from(**headers).post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    service = _service(app)
    assert (service.db.down, service.db.latency, service.status()["expired_by_operator"]) == (
        False,
        0.0,
        0.0,
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/products/db-outage", {"down": "yes"}),
        ("/admin/products/db-outage", {}),
        ("/admin/products/db-outage", [True]),
        ("/admin/products/db-latency", {"seconds": -1}),
        ("/admin/products/db-latency", {"seconds": 11}),
        ("/admin/products/db-latency", {"seconds": True}),
        ("/admin/products/db-latency", "0.5"),
    ],
)
async def test_admin_switches_refuse_bad_bodies(
    client_from: ClientFactory, path: str, body: object
) -> None:
    response = await client_from(**ADMIN).post(path, json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("content", [b"{", b"not json", b'{"down": true}' + b" " * 5000])
async def test_admin_switches_refuse_what_is_not_a_small_json_object(
    app: Starlette, client_from: ClientFactory, content: bytes
) -> None:
    response = await client_from(**ADMIN).post("/admin/products/db-outage", content=content)
    assert response.status_code == 422
    assert _service(app).db.down is False


async def test_operators_fail_the_db_slow_it_and_expire_the_cache(
    app: Starlette, client_from: ClientFactory
) -> None:
    service = _service(app)
    admin, reader = client_from(**ADMIN), client_from("198.51.100.2", **PREMIUM)
    assert (await reader.get("/api/v1/products/6")).headers["x-cache"] == "MISS"
    latency = await admin.post("/admin/products/db-latency", json={"seconds": 0.25})
    assert (latency.status_code, latency.json()["db_latency"]) == (200, 0.25)
    assert service.db.latency == 0.25
    down = await admin.post("/admin/products/db-outage", json={"down": True})
    assert (down.status_code, down.json()["db_down"]) == (200, True)
    assert (await reader.get("/api/v1/products/6")).headers["x-cache"] == "HIT"
    expired = await admin.post("/admin/products/cache/expire")
    assert expired.status_code == 200
    assert expired.json()["expired_by_operator"] == TTL + SWR
    stale = await reader.get("/api/v1/products/6")
    assert (stale.status_code, stale.headers["x-cache"]) == (200, "STALE")
    up = await admin.post("/admin/products/db-outage", json={"down": False})
    assert up.json()["db_down"] is False
    await admin.post("/admin/products/db-latency", json={"seconds": 0})
    assert (await reader.get("/api/v1/products/6")).headers["x-cache"] == "MISS"
    assert (await reader.get("/api/v1/products/6")).headers["x-cache"] == "HIT"


async def test_cache_status_counts_lookups_loads_and_queries(
    app: Starlette, client_from: ClientFactory
) -> None:
    client = client_from(**PREMIUM)
    for path in ["/api/v1/products/1"] * 4 + ["/api/v1/products/999"]:
        await client.get(path)
    status = await client_from().get("/api/v1/products/cache")  # no key needed to look
    assert status.status_code == 200
    assert status.headers["content-type"] == "application/json"
    body = status.json()
    assert {key: body[key] for key in ("hits", "misses", "stale", "coalesced")} == {
        "hits": 3,
        "misses": 2,
        "stale": 0,
        "coalesced": 0,
    }
    assert body["hit_ratio"] == 0.6
    assert body["loads"] == {"loaded": 1, "missing": 1}
    assert (body["db_queries"], body["db_failed_queries"], body["db_down"]) == (2, 0, False)
    assert (body["ttl"], body["stale_if_error"], body["negative_ttl"]) == (3600, 86400, 30)


async def test_cache_events_reach_the_metrics(client_from: ClientFactory) -> None:
    client = client_from(**PREMIUM)
    for _ in range(3):
        await client.get("/api/v1/products/9")
    metrics_text = (await client.get("/metrics")).text
    samples = {
        (sample.name, sample.labels.get("name"), sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }
    assert samples["cache_lookups_total", "products", "hit"] == 2
    assert samples["cache_lookups_total", "products", "miss"] == 1
    assert samples["cache_loads_total", "products", "loaded"] == 1
