"""/live, /ready, /health: which checks each shows, status codes, bodies, queries, details.

Every response goes through the validating client (tests/health/support.py): health+json
bodies are checked against the JSON Schema written from the draft.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.health import (
    MAX_EXCLUDES,
    HealthApp,
    HealthRegistry,
    Observation,
    require_token,
)
from sysdesign_kit.principal import Principal, get_principal, set_principal
from tests.health.support import Dependency, Scripted, client, settle, validated


@dataclass
class Service:
    registry: HealthRegistry
    loop: Scripted
    redis: Dependency
    cache: Dependency
    audit: Scripted
    http: httpx.AsyncClient

    def checks(self) -> list[Scripted]:
        return [self.loop, self.redis, self.cache, self.audit]


@pytest.fixture
async def service(clock: ManualClock) -> AsyncIterator[Service]:
    loop = Scripted("eventloop", Observation("pass", 0.4, "ms"), liveness=True)
    redis = Dependency(
        "redis",
        Observation("pass", 1.25, "ms"),
        measurement="responseTime",
        component_type="datastore",
        component_id="redis-1",
        affected_endpoints=["/orders/{id}"],
    )
    cache = Dependency("cache", critical=False)
    audit = Scripted("audit", readiness=False)
    registry = HealthRegistry(
        [loop, redis, cache, audit], clock=clock, version="1", release_id="1.2.3"
    )
    await registry.start()
    await settle()
    async with client(HealthApp(registry)) as http:
        yield Service(registry, loop, redis, cache, audit, http)
    await registry.stop()


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("/live", ["eventloop:status"]),
        ("/ready", ["eventloop:status", "redis:responseTime", "cache:status"]),
        ("/health", ["eventloop:status", "redis:responseTime", "cache:status", "audit:status"]),
        ("/ready/", ["eventloop:status", "redis:responseTime", "cache:status"]),
    ],
)
async def test_each_endpoint_shows_its_checks(service: Service, path: str, keys: list[str]) -> None:
    response = await service.http.get(path)
    assert response.status_code == 200
    assert list(response.json()["checks"]) == keys


async def test_the_document(service: Service, clock: ManualClock) -> None:
    service.redis.outcome = Observation("fail", 250.0, "ms", "slow replies")
    await service.registry.refresh()
    clock.advance(1)
    response = await service.http.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/health+json"
    assert response.headers["cache-control"] == "max-age=9"
    time = "2023-11-14T22:30:00.000Z"  # the ManualClock's wall time at the reading
    assert response.json() == {
        "status": "fail",
        "version": "1",
        "releaseId": "1.2.3",
        "checks": {
            "eventloop:status": [
                {
                    "componentType": "component",
                    "observedValue": 0.4,
                    "observedUnit": "ms",
                    "status": "pass",
                    "time": time,
                }
            ],
            "redis:responseTime": [
                {
                    "componentId": "redis-1",
                    "componentType": "datastore",
                    "observedValue": 250.0,
                    "observedUnit": "ms",
                    "status": "fail",
                    "affectedEndpoints": ["/orders/{id}"],
                    "time": time,
                    "output": "slow replies",
                }
            ],
            "cache:status": [
                {
                    "componentType": "component",
                    "observedValue": 1.5,
                    "observedUnit": "ms",
                    "status": "pass",
                    "time": time,
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("failing", "live", "ready", "health"),
    [
        ("eventloop", 503, 503, 503),
        ("redis", 200, 503, 503),
        ("cache", 200, 200, 200),  # non-critical: warn
        ("audit", 200, 200, 503),  # not a readiness check
    ],
)
async def test_status_codes_follow_the_endpoint(
    service: Service, failing: str, live: int, ready: int, health: int
) -> None:
    check = next(c for c in service.checks() if c.name == failing)
    check.outcome = ConnectionError("down")
    await service.registry.refresh()
    codes = [(await service.http.get(path)).status_code for path in ("/live", "/ready", "/health")]
    assert codes == [live, ready, health]


async def test_warn_is_200_and_says_why(service: Service) -> None:
    service.cache.outcome = TimeoutError()
    await service.registry.refresh()
    response = await service.http.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "warn"
    assert body["checks"]["cache:status"][0]["output"] == (
        "non-critical check failed: TimeoutError"
    )


async def test_verbose_listing(service: Service) -> None:
    service.redis.outcome = ConnectionRefusedError("refused")
    service.cache.outcome = Observation("fail", output="evicting\neverything")
    await service.registry.refresh()
    response = await service.http.get("/ready?verbose")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.status_code == 503
    assert response.text == (
        "[+]eventloop ok\n"
        "[-]redis failed: ConnectionRefusedError: refused\n"
        "[+]cache warn: non-critical check failed: evicting everything\n"
        "ready check failed\n"
    )
    assert (await service.http.get("/live?verbose=1")).text == (
        "[+]eventloop ok\nlive check passed\n"
    )
    assert (await service.http.get("/live?verbose=false")).headers["content-type"] == (
        "application/health+json"
    )


@pytest.mark.parametrize(
    ("query", "listed", "excluded", "unknown"),
    [
        ("exclude=redis", ["eventloop", "cache"], ["redis"], []),
        ("exclude=redis&exclude=cache", ["eventloop"], ["redis", "cache"], []),
        ("exclude=redis,cache", ["eventloop"], ["redis", "cache"], []),
        ("exclude=redis%2Ccache&exclude=", ["eventloop"], ["redis", "cache"], []),
        ("exclude=nope,redis&exclude=nope", ["eventloop", "cache"], ["redis"], ["nope"]),
        ("exclude=audit", ["eventloop", "redis", "cache"], [], []),  # known, not at /ready
        ("exclude=eventloop,redis,cache", [], ["eventloop", "redis", "cache"], []),
    ],
)
async def test_exclude(
    service: Service, query: str, listed: list[str], excluded: list[str], unknown: list[str]
) -> None:
    service.redis.outcome = ConnectionError("down")
    await service.registry.refresh()
    document = (await service.http.get(f"/ready?{query}")).json()
    assert [key.split(":")[0] for key in document["checks"]] == listed
    assert document["status"] == ("fail" if "redis" in listed else "pass")
    assert document.get("notes", []) == [f"exclude: no check named {n!r}" for n in unknown]
    text = (await service.http.get(f"/ready?verbose&{query}")).text
    for name in excluded:
        assert f"[+]{name} excluded: ok\n" in text
    assert ("cannot be excluded" in text) == bool(unknown)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("exclude=" + ",".join(f"n{i}" for i in range(MAX_EXCLUDES)), 200),
        ("exclude=" + ",".join(f"n{i}" for i in range(MAX_EXCLUDES + 1)), 400),
        ("&".join(f"exclude=n{i}" for i in range(3000)), 400),
        ("exclude=" + "x" * 20_000, 400),
        ("exclude=" + "%FF%FE" * 1000 + "&verbose", 200),
        ("exclude=" + ",".join("x" * 60 + str(i) for i in range(200)), 200),
    ],
)
async def test_huge_exclude_lists_are_bounded(service: Service, query: str, status: int) -> None:
    for path in ("/ready", "/health", "/live"):
        response = await service.http.get(f"{path}?{query}")
        assert response.status_code == status
        assert len(response.content) < 4096  # unknown names are reported, but only a few


@pytest.mark.parametrize(
    ("path", "status", "keys"),
    [
        ("/ready/redis", 200, ["redis:responseTime"]),
        ("/health/audit", 200, ["audit:status"]),
        ("/live/eventloop", 200, ["eventloop:status"]),
        ("/live/redis", 404, None),  # a dependency is not a liveness check
        ("/ready/audit", 404, None),
        ("/ready/nope", 404, None),
        ("/ready/redis/extra", 404, None),
        ("/ready/" + "x" * 5000, 404, None),
        ("/metrics", 404, None),
    ],
)
async def test_single_checks(
    service: Service, path: str, status: int, keys: list[str] | None
) -> None:
    response = await service.http.get(path)
    assert response.status_code == status
    if keys is None:
        assert len(response.json()["detail"]) < 200
    else:
        assert list(response.json()["checks"]) == keys


async def test_a_single_check_answers_for_itself(service: Service) -> None:
    service.redis.outcome = ConnectionError("down")
    await service.registry.refresh()
    assert (await service.http.get("/ready/redis")).status_code == 503
    assert (await service.http.get("/ready/eventloop")).status_code == 200
    text = (await service.http.get("/ready/redis?verbose&exclude=redis")).text
    assert text == "[-]redis failed: ConnectionError: down\nready check failed\n"


async def test_head_and_other_methods(service: Service) -> None:
    service.redis.outcome = ConnectionError("down")
    await service.registry.refresh()
    for path in ("/ready", "/ready/redis", "/live?verbose", "/nowhere", "/ready/nope"):
        get, head = await service.http.get(path), await service.http.head(path)
        assert head.status_code == get.status_code
        assert head.content == b""
        assert head.headers["content-length"] == str(len(get.content))
        assert head.headers["content-type"] == get.headers["content-type"]
    post = await service.http.post("/ready")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"


async def test_draining_fails_ready_at_once(service: Service) -> None:
    service.registry.drain()
    ready = await service.http.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["output"] == "draining: the service is shutting down"
    assert ready.json()["checks"]["redis:responseTime"][0]["status"] == "pass"
    text = (await service.http.get("/ready?verbose&exclude=draining")).text
    assert "[-]draining failed: the service is shutting down\n" in text  # not excludable
    health = await service.http.get("/health")
    assert (health.status_code, health.json()["status"]) == (200, "warn")
    assert (await service.http.get("/live")).json()["status"] == "pass"
    assert (await service.http.get("/ready/redis")).status_code == 200


async def test_probes_never_reach_the_checks(service: Service) -> None:
    before = [check.calls for check in service.checks()]
    for _ in range(50):
        for path in ("/live", "/ready", "/health?verbose", "/ready/redis", "/health/audit"):
            await service.http.get(path)
    assert [check.calls for check in service.checks()] == before
    assert validated["count"] >= 250


async def test_no_reading_yet_is_a_fail(clock: ManualClock) -> None:
    registry = HealthRegistry([Dependency("redis")], clock=clock)
    async with client(HealthApp(registry)) as http:
        response = await http.get("/ready")
        assert response.status_code == 503
        entry = response.json()["checks"]["redis:status"][0]
        assert "time" not in entry
        assert entry["output"].startswith("no reading yet")
        assert response.headers["cache-control"] == "max-age=0"


async def test_stale_readings_show_in_the_response(service: Service, clock: ManualClock) -> None:
    await service.registry.stop()
    clock.advance(30)
    body = (await service.http.get("/ready")).json()
    assert body["status"] == "warn"
    assert body["checks"]["redis:responseTime"][0]["output"].startswith("stale reading")
    clock.advance(30)
    assert (await service.http.get("/ready")).status_code == 503


def _by_user(scope: Any) -> bool:
    return get_principal(scope) is not None


class _FakeAuth:
    """Sets a principal when the request says ``x-user`` (stands in for real auth)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if any(key == b"x-user" for key, _ in scope.get("headers", ())):
            set_principal(scope, Principal("ops"))
        await self.app(scope, receive, send)


def _boom(scope: Any) -> bool:
    raise RuntimeError("policy bug")


@pytest.mark.parametrize(
    ("details", "headers", "shown"),
    [
        (True, {}, True),
        (False, {}, False),
        (_by_user, {"x-user": "1"}, True),
        (_by_user, {}, False),
        (require_token("s3cret"), {"authorization": "Bearer s3cret"}, True),
        (require_token("s3cret"), {"authorization": "bearer s3cret"}, True),
        (require_token("s3cret"), {"authorization": "Bearer s3cre"}, False),
        (require_token("s3cret"), {"authorization": "Basic s3cret"}, False),
        (require_token("s3cret"), {}, False),
        (require_token("s3cret", header="x-health", scheme=None), {"x-health": "s3cret"}, True),
        (_boom, {}, False),
    ],
)
async def test_details_for_whom(
    service: Service,
    details: Any,
    headers: dict[str, str],
    shown: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service.redis.outcome = Observation("fail", 9, "ms", "secret-host:6379 refused")
    await service.registry.refresh()
    app = _FakeAuth(HealthApp(service.registry, details=details))
    async with client(app) as http:
        with caplog.at_level(logging.ERROR, "sysdesign_kit.health"):
            body = (await http.get("/ready", headers=headers)).json()
            text = (await http.get("/ready?verbose", headers=headers)).text
    entry = body["checks"]["redis:responseTime"][0]
    assert ("version" in body) is shown
    assert ("output" in entry) is shown
    assert ("observedValue" in entry) is shown
    assert ("componentId" in entry) is shown
    assert entry["status"] == "fail"
    assert ("secret-host" in text) is shown
    assert ("[-]redis failed: reason withheld" in text) is not shown
    assert ("policy bug" in caplog.text) is (details is _boom)


async def _call(app: HealthApp, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("health endpoints read no request body")

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_a_megabyte_of_query_is_refused_unparsed(service: Service) -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/ready",
        "query_string": b"exclude=" + b"a," * 500_000,
        "headers": [],
    }
    start, body = await _call(HealthApp(service.registry), scope)
    assert start["status"] == 400
    assert b"longer than 16384 bytes" in body["body"]


async def test_other_scopes(service: Service) -> None:
    sent = await _call(HealthApp(service.registry), {"type": "websocket", "path": "/live"})
    assert sent == [{"type": "websocket.close", "code": 1000}]
