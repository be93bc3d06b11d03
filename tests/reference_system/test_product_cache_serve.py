"""The served demo's product cache over real HTTP, on the real clock.

No test waits an hour for entries to expire: the operators' ``/admin/products/cache/expire``
ages them, and ``/admin/products/db-latency`` slows the database so that a stampede's
requests surely arrive while its one query runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.reference_system.test_serve import serving

pytestmark = pytest.mark.slow

READER = {"X-API-Key": "demo-premium-key-3"}
ADMIN = {"X-API-Key": "demo-admin-key"}
COUNTS = ("hits", "misses", "stale", "coalesced", "db_queries", "db_failed_queries")


def _counts(client: httpx.Client) -> dict[str, int]:
    status = client.get("/api/v1/products/cache").json()
    return {name: status[name] for name in COUNTS}


def _since(before: dict[str, int], client: httpx.Client) -> dict[str, int]:
    after = _counts(client)
    return {name: after[name] - before[name] for name in COUNTS}


def _admin(client: httpx.Client, path: str, body: object = None) -> dict[str, object]:
    response = client.post(path, json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    document: dict[str, object] = response.json()
    return document


async def _all_at_once(base_url: str, path: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, headers=READER, timeout=30) as client:
        return await asyncio.gather(*(client.get(path) for _ in range(count)))


def check_reads_through_the_cache(client: httpx.Client) -> httpx.Response:
    first, second = (client.get("/api/v1/products/1", headers=READER) for _ in range(2))
    for response in (first, second):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "max-age=300"
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert (
        second.json()
        == first.json()
        == {
            "id": 1,
            "name": "Mechanical keyboard",
            "price": 89.99,
            "currency": "EUR",
        }
    )
    return first


def check_stampede(client: httpx.Client) -> None:
    # A 1 s query: the 40 requests (connections opened at once) all arrive while it runs,
    # even on a slow machine; any that came later would be hits, never a second query.
    assert _admin(client, "/admin/products/db-latency", {"seconds": 1.0})["db_latency"] == 1.0
    before = _counts(client)
    answers = asyncio.run(_all_at_once(str(client.base_url), "/api/v1/products/42", 40))
    assert [a.status_code for a in answers] == [200] * 40
    assert {a.json()["id"] for a in answers} == {42}
    counted = _since(before, client)
    assert (counted["db_queries"], counted["misses"]) == (1, 1)
    assert counted["coalesced"] >= 1
    assert counted["coalesced"] + counted["hits"] == 39
    assert "COALESCED" in {a.headers["x-cache"] for a in answers}
    _admin(client, "/admin/products/db-latency", {"seconds": 0})


def check_stale_if_error(client: httpx.Client, fresh: httpx.Response) -> None:
    refused = client.post("/admin/products/db-outage", json={"down": True}, headers=READER)
    assert refused.status_code == 403
    before = _counts(client)
    _admin(client, "/admin/products/cache/expire")
    assert _admin(client, "/admin/products/db-outage", {"down": True})["db_down"] is True
    stale = client.get("/api/v1/products/1", headers=READER)
    assert (stale.status_code, stale.headers["x-cache"]) == (200, "STALE")
    assert stale.json() == fresh.json()
    assert stale.headers["cache-control"] == "max-age=300"
    assert client.get("/api/v1/products/42", headers=READER).headers["x-cache"] == "STALE"
    never_cached = client.get("/api/v1/products/43", headers=READER)
    assert never_cached.status_code == 503
    assert never_cached.headers["content-type"] == "application/problem+json"
    counted = _since(before, client)
    assert (counted["stale"], counted["db_failed_queries"]) == (2, 3)
    assert _admin(client, "/admin/products/db-outage", {"down": False})["db_down"] is False
    back = [client.get("/api/v1/products/1", headers=READER) for _ in range(2)]
    assert [r.headers["x-cache"] for r in back] == ["MISS", "HIT"]


def check_metrics(client: httpx.Client) -> None:
    samples = {
        (sample.name, sample.labels.get("name"), sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }
    assert samples["cache_lookups_total", "products", "stale"] == 2
    assert samples["cache_lookups_total", "products", "coalesced"] >= 1
    assert samples["cache_loads_total", "products", "failed"] == 3


def test_served_products_read_through_the_cache(tmp_path: Path) -> None:
    with serving(tmp_path) as client:
        fresh = check_reads_through_the_cache(client)
        check_stampede(client)
        check_stale_if_error(client, fresh)
        check_metrics(client)
