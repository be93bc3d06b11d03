"""The reference system in-process: routes, problem bodies, API keys and tiers."""

from __future__ import annotations

import pytest

from sysdesign_kit.clock import ManualClock
from tests.reference_system.conftest import ClientFactory

PROBLEM = "application/problem+json"


async def test_product_is_json_with_ratelimit_headers(client_from: ClientFactory) -> None:
    response = await client_from().get("/api/v1/products/1")
    assert response.status_code == 200
    assert response.json() == {
        "id": 1,
        "name": "Mechanical keyboard",
        "price": 89.99,
        "currency": "EUR",
    }
    assert response.headers["cache-control"] == "max-age=300"
    assert response.headers["ratelimit-policy"] == '"anonymous";q=20;w=60, "ip";q=500;w=60'
    assert response.headers["ratelimit"].startswith('"anonymous";r=19;')


@pytest.mark.parametrize(
    ("method", "path", "status", "detail"),
    [
        ("GET", "/api/v1/products/999", 404, "no product with id 999"),
        ("GET", "/api/v1/products/abc", 422, "positive integer"),
        ("GET", "/api/v1/products/0", 422, "positive integer"),
        ("GET", "/api/v1/products/-1", 422, "positive integer"),
        ("GET", "/api/v1/products/1.5", 422, "positive integer"),
        ("GET", "/api/v1/products/%D9%A1", 422, "positive integer"),  # Arabic-Indic one
        ("GET", "/api/v1/products/" + "9" * 5000, 422, "positive integer"),
        ("GET", "/api/v1/nothing-here", 404, "no resource at /api/v1/nothing-here"),
        ("POST", "/api/v1/products/1", 405, "POST is not allowed"),
        ("DELETE", "/health", 405, "DELETE is not allowed"),
    ],
)
async def test_errors_are_problem_json(
    client_from: ClientFactory, method: str, path: str, status: int, detail: str
) -> None:
    response = await client_from().request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["type"]) == (status, "about:blank")
    assert detail in body["detail"]


@pytest.mark.parametrize("path", ["/health", "/live", "/ready"])
async def test_health_endpoints_are_exempt_health_json(
    client_from: ClientFactory, path: str
) -> None:
    client = client_from()
    for _ in range(30):
        response = await client.get(path)
        assert response.status_code == 200
    assert response.headers["content-type"] == "application/health+json"
    assert "ratelimit" not in response.headers
    body = response.json()
    assert body["status"] in ("pass", "warn")
    assert "eventloop:lag" in body["checks"]
    if path == "/health":
        assert "rate-limit state in memory" in body["description"]
        assert "disk:freeSpace" in body["checks"]


async def test_metrics_show_requests_and_decisions(client_from: ClientFactory) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client = client_from()
    for _ in range(3):
        await client.get("/api/v1/products/1")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "ratelimit" not in response.headers  # exempt
    samples = {
        (sample.name, sample.labels.get("route")): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    route = "/api/v1/products/{product_id}"
    assert samples["http_server_request_duration_seconds_count", route] == 3
    assert any(name == "ratelimit_decisions_total" for name, _ in samples)


@pytest.mark.parametrize(
    ("path", "stages"),
    [
        ("/api/v1/products/1", ["auth", "ratelimit", "app", "total"]),
        ("/api/v1/products/999", ["auth", "ratelimit", "app", "total"]),
        ("/health", ["auth", "app", "total"]),
    ],
)
async def test_every_response_has_a_request_id_and_server_timing(
    client_from: ClientFactory, path: str, stages: list[str]
) -> None:
    response = await client_from().get(path)
    assert response.headers["x-request-id"]
    entries = [
        entry.split(";")[0].strip() for entry in response.headers["server-timing"].split(",")
    ]
    assert entries == stages


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("demo-trace-42", True),
        ("0123456789abcdef0123456789abcdef", True),
        ("x" * 1000, False),
        ("bad id with spaces", False),
        ("", False),
    ],
)
async def test_incoming_request_id_is_echoed_only_when_valid(
    client_from: ClientFactory, sent: str, echoed: bool
) -> None:
    response = await client_from().get("/api/v1/products/1", headers={"X-Request-ID": sent})
    assert (response.headers["x-request-id"] == sent) is echoed
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("key", "policy"),
    [
        (None, "anonymous"),
        ("demo-free-key", "free"),
        ("demo-free-key-3", "free"),
        ("demo-premium-key", "premium"),
        ("demo-premium-key-2", "premium"),
    ],
)
async def test_api_key_selects_the_tier(
    client_from: ClientFactory, key: str | None, policy: str
) -> None:
    headers = {"X-API-Key": key} if key else {}
    response = await client_from(**headers).get("/api/v1/products/2")
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"].startswith(f'"{policy}";')


@pytest.mark.parametrize(
    "key",
    ["not-a-key", "DEMO-FREE-KEY", "demo-free-key ", "x" * 10_000, "ключ"],
)
async def test_unknown_key_is_401_problem(client_from: ClientFactory, key: str) -> None:
    client = client_from()
    response = await client.get("/api/v1/products/1", headers={b"x-api-key": key.encode()})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'


async def test_unknown_keys_count_against_the_anonymous_limit(
    client_from: ClientFactory,
) -> None:
    client = client_from(**{"X-API-Key": "guess"})
    statuses = [(await client.get("/api/v1/products/1")).status_code for _ in range(21)]
    assert statuses == [401] * 20 + [429]


@pytest.mark.parametrize(
    ("key", "limit", "retry_after"),
    [(None, 20, "3"), ("demo-free-key", 100, "1"), ("demo-premium-key", 500, "1")],
)
async def test_tier_limit_then_retry_after_is_honest(
    client_from: ClientFactory,
    clock: ManualClock,
    key: str | None,
    limit: int,
    retry_after: str,
) -> None:
    # Premium's 1000/min is above the 500/min per-IP limit, so one address stops at 500.
    client = client_from(**({"X-API-Key": key} if key else {}))
    statuses = [(await client.get("/api/v1/products/3")).status_code for _ in range(limit + 1)]
    assert statuses == [200] * limit + [429]
    denied = await client.get("/api/v1/products/3")
    assert denied.headers["retry-after"] == retry_after
    assert denied.headers["content-type"] == PROBLEM
    clock.advance(int(retry_after))
    assert (await client.get("/api/v1/products/3")).status_code == 200


async def test_users_behind_one_ip_share_the_per_ip_limit(client_from: ClientFactory) -> None:
    keys = ["demo-premium-key", "demo-premium-key-2", "demo-premium-key-3"]
    clients = [client_from("203.0.113.7", **{"X-API-Key": key}) for key in keys]
    statuses = [(await clients[i % 3].get("/api/v1/products/4")).status_code for i in range(501)]
    assert statuses == [200] * 500 + [429]
    denied = await clients[0].get("/api/v1/products/4")
    assert denied.json()["violated-policies"] == ["ip"]
    # Another address is not affected.
    elsewhere = client_from("192.0.2.44", **{"X-API-Key": "demo-premium-key"})
    assert (await elsewhere.get("/api/v1/products/4")).status_code == 200
