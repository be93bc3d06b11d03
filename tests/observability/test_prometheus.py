"""PrometheusSink: each kind of event, scraped over /metrics and parsed back with
prometheus-client's own text parser."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sysdesign_kit import ConfigurationError, ManualClock, RateLimiter
from sysdesign_kit.events import (
    AuthFailed,
    AuthSucceeded,
    BackendFailure,
    BreakerCallFinished,
    BreakerRejected,
    BreakerTransitioned,
    CacheAccessed,
    CacheLoaded,
    Event,
    HealthChecked,
    RateLimitDecided,
    RequestFinished,
    RequestStarted,
    RetryAttempted,
    RetryGaveUp,
)
from sysdesign_kit.observability import PrometheusSink, metrics_app
from sysdesign_kit.observability.prometheus import HTTP_DURATION_BUCKETS


async def scrape(registry: CollectorRegistry | None = None) -> dict[str, Metric]:
    """GET /metrics over ASGI and parse it: metric families by name."""
    transport = httpx.ASGITransport(app=metrics_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        reply = await client.get("/metrics")
    assert reply.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(reply.text)}


def samples(families: dict[str, Metric], sample: str) -> list[Sample]:
    """Every sample called ``sample``, whichever family it is in."""
    return [s for family in families.values() for s in family.samples if s.name == sample]


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The value of the one sample called ``sample`` with exactly ``labels``."""
    found = [s.value for s in samples(families, sample) if s.labels == labels]
    assert len(found) == 1, (sample, labels, samples(families, sample))
    return found[0]


def series(families: dict[str, Metric], sample: str) -> list[dict[str, str]]:
    return [s.labels for s in samples(families, sample)]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def sink(registry: CollectorRegistry) -> PrometheusSink:
    return PrometheusSink(registry=registry)


def decided(allowed: bool, *, shadow: bool = False, degraded: bool = False) -> RateLimitDecided:
    return RateLimitDecided(
        component="ratelimit:api", policy="api", key="ip:1.2.3.4", allowed=allowed, limit=5,
        remaining=0, retry_after=1.0, cost=1, shadow=shadow, degraded=degraded,
    )  # fmt: skip


def finished(route: str = "/items/{id}", status: int = 200, **kw: Any) -> RequestFinished:
    fields: dict[str, Any] = {"method": "GET", "request_id": "r", "duration": 0.02} | kw
    return RequestFinished(component="http", route=route, status=status, **fields)


# (events, metric family, type, sample, labels, value)
EVENT_TABLE: list[tuple[list[Event], str, str, str, dict[str, str], float]] = [
    ([decided(True)] * 2, "ratelimit_decisions", "counter", "ratelimit_decisions_total",
     {"policy": "api", "outcome": "allowed"}, 2),
    ([decided(False)], "ratelimit_decisions", "counter", "ratelimit_decisions_total",
     {"policy": "api", "outcome": "denied"}, 1),
    ([decided(False, shadow=True)], "ratelimit_decisions", "counter",
     "ratelimit_decisions_total", {"policy": "api", "outcome": "shadow_denied"}, 1),
    ([decided(True, shadow=True)], "ratelimit_decisions", "counter",
     "ratelimit_decisions_total", {"policy": "api", "outcome": "allowed"}, 1),
    ([decided(True, degraded=True), decided(False, degraded=True)], "ratelimit_decisions",
     "counter", "ratelimit_decisions_total", {"policy": "api", "outcome": "degraded"}, 2),
    ([BreakerRejected(component="b", name="pay", retry_after=3.0)] * 3,
     "circuit_breaker_rejections", "counter", "circuit_breaker_rejections_total",
     {"name": "pay"}, 3),
    ([BreakerTransitioned(component="b", name="pay", previous="closed", state="open")],
     "circuit_breaker_transitions", "counter", "circuit_breaker_transitions_total",
     {"name": "pay", "from_state": "closed", "to_state": "open"}, 1),
    ([BreakerCallFinished(component="b", name="pay", outcome="failure", duration=0.1)] * 2,
     "circuit_breaker_calls", "counter", "circuit_breaker_calls_total",
     {"name": "pay", "outcome": "failure"}, 2),
    ([BreakerCallFinished(component="b", name="pay", outcome="success", duration=3, slow=True),
      BreakerCallFinished(component="b", name="pay", outcome="success", duration=0.1)],
     "circuit_breaker_slow_calls", "counter", "circuit_breaker_slow_calls_total",
     {"name": "pay"}, 1),
    ([RetryAttempted(component="r", name="users", attempt=1, delay=1.0, error="E")] * 2,
     "retry_attempts", "counter", "retry_attempts_total", {"name": "users"}, 2),
    ([RetryGaveUp(component="r", name="users", attempts=3, error="E", reason="attempts")],
     "retry_give_ups", "counter", "retry_give_ups_total",
     {"name": "users", "reason": "attempts"}, 1),
    ([CacheAccessed(component="c", name="products", outcome="stale")], "cache_lookups",
     "counter", "cache_lookups_total", {"name": "products", "outcome": "stale"}, 1),
    ([CacheLoaded(component="c", name="products", outcome="loaded", duration=0.25)] * 2,
     "cache_loads", "counter", "cache_loads_total", {"name": "products", "outcome": "loaded"}, 2),
    ([CacheLoaded(component="c", name="products", outcome="failed", duration=0.25)] * 2,
     "cache_load_duration_seconds", "counter", "cache_load_duration_seconds_total",
     {"name": "products"}, 0.5),
    ([AuthSucceeded(component="a", scheme="jwt", subject="u1")] * 2, "auth_successes",
     "counter", "auth_successes_total", {"scheme": "jwt"}, 2),
    ([AuthFailed(component="a", scheme="api_key", reason="unknown_key")], "auth_failures",
     "counter", "auth_failures_total", {"scheme": "api_key", "reason": "unknown_key"}, 1),
    ([BackendFailure(component="ratelimit:api", backend="redis", operation="hit",
                     error="ConnectionError: refused", outcome="fail_open")],
     "backend_errors", "counter", "backend_errors_total",
     {"component": "ratelimit:api", "backend": "redis", "outcome": "fail_open"}, 1),
    ([RequestStarted(component="http", method="GET", route="/items/{id}", request_id="r")] * 3,
     "http_server_active_requests", "gauge", "http_server_active_requests",
     {"method": "GET"}, 3),
    ([finished(status=503, error_type="503")], "http_server_errors", "counter",
     "http_server_errors_total",
     {"method": "GET", "route": "/items/{id}", "error_type": "503"}, 1),
    ([finished(status=200), finished(status=200)], "http_server_request_duration_seconds",
     "histogram", "http_server_request_duration_seconds_count",
     {"method": "GET", "route": "/items/{id}", "status_code": "200"}, 2),
    ([HealthChecked(component="h", check="redis:responseTime", status="warn", duration=0.25,
                    observed_value=12.5)],
     "health_check_status", "gauge", "health_check_status", {"check": "redis:responseTime"},
     0.5),
    ([HealthChecked(component="h", check="redis:responseTime", status="pass", duration=0.25,
                    observed_value=12.5)],
     "health_check_observed_value", "gauge", "health_check_observed_value",
     {"check": "redis:responseTime"}, 12.5),
    ([HealthChecked(component="h", check="disk:utilization", status="fail", duration=0.25)],
     "health_check_duration_seconds", "gauge", "health_check_duration_seconds",
     {"check": "disk:utilization"}, 0.25),
]  # fmt: skip


@pytest.mark.parametrize(
    ("events", "family", "kind", "sample", "labels", "expected"),
    EVENT_TABLE,
    ids=[f"{row[3]}-{'-'.join(row[4].values())}" for row in EVENT_TABLE],
)
async def test_each_event_kind_becomes_its_metric(
    registry: CollectorRegistry,
    sink: PrometheusSink,
    events: list[Event],
    family: str,
    kind: str,
    sample: str,
    labels: dict[str, str],
    expected: float,
) -> None:
    for event in events:
        sink(event)
    families = await scrape(registry)
    assert families[family].type == kind
    assert families[family].documentation  # every metric has a HELP text
    assert value(families, sample, **labels) == expected


async def test_known_label_sets_are_present_from_the_first_event(
    registry: CollectorRegistry, sink: PrometheusSink
) -> None:
    sink(decided(True))
    sink(CacheAccessed(component="c", name="products", outcome="hit"))
    families = await scrape(registry)
    outcomes = {"allowed": 1, "denied": 0, "shadow_denied": 0, "degraded": 0}
    for outcome, count in outcomes.items():
        assert value(families, "ratelimit_decisions_total", policy="api", outcome=outcome) == count
    assert {s["outcome"] for s in series(families, "cache_lookups_total")} == {
        "hit", "miss", "stale", "coalesced",
    }  # fmt: skip
    methods = {s["method"] for s in series(families, "http_server_active_requests")}
    assert methods >= {"GET", "POST", "_OTHER"}


@pytest.mark.parametrize(
    ("states", "current"),
    [
        (["open"], "open"),
        (["open", "half_open"], "half_open"),
        (["open", "half_open", "closed"], "closed"),
        (["forced_open"], "forced_open"),  # a state outside the vocabulary gets its series
    ],
)
async def test_breaker_state_is_one_series_per_state(
    registry: CollectorRegistry, sink: PrometheusSink, states: list[str], current: str
) -> None:
    previous = "closed"
    for state in states:
        sink(BreakerTransitioned(component="b", name="pay", previous=previous, state=state))
        previous = state
    families = await scrape(registry)
    readings = {
        s.labels["state"]: s.value
        for s in families["circuit_breaker_state"].samples
        if s.labels["name"] == "pay"
    }
    assert readings[current] == 1
    assert sum(readings.values()) == 1
    assert {"closed", "open", "half_open"} <= set(readings)


async def test_in_flight_gauge_goes_up_and_down(
    registry: CollectorRegistry, sink: PrometheusSink
) -> None:
    for method in ("GET", "GET", "POST", "PROPFIND", "get"):
        sink(RequestStarted(component="http", method=method, route="/x", request_id="r"))
    sink(finished(method="GET"))
    sink(finished(method="PROPFIND"))
    families = await scrape(registry)
    assert value(families, "http_server_active_requests", method="GET") == 1
    assert value(families, "http_server_active_requests", method="POST") == 1
    assert value(families, "http_server_active_requests", method="_OTHER") == 1


async def test_unknown_methods_are_reported_as_other(
    registry: CollectorRegistry, sink: PrometheusSink
) -> None:
    sink(finished(method="PROPFIND"))
    sink(finished(method="get"))
    families = await scrape(registry)
    labels = {"method": "_OTHER", "route": "/items/{id}", "status_code": "200"}
    assert value(families, "http_server_request_duration_seconds_count", **labels) == 2


async def test_request_histogram_follows_opentelemetry(
    registry: CollectorRegistry, sink: PrometheusSink
) -> None:
    # On a bound counts in that bucket; past the last bound only +Inf counts it.
    for duration in (0.001, 0.005, 0.3, 10.0, 11.0):
        sink(finished(duration=duration))
    families = await scrape(registry)
    family = families["http_server_request_duration_seconds"]
    assert family.type == "histogram"
    assert family.unit in ("", "seconds")  # the text format carries no UNIT line
    buckets = {
        s.labels["le"]: s.value
        for s in family.samples
        if s.name.endswith("_bucket") and s.labels["route"] == "/items/{id}"
    }
    assert list(buckets) == [*(_le(b) for b in HTTP_DURATION_BUCKETS), "+Inf"]
    assert HTTP_DURATION_BUCKETS == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    )  # fmt: skip
    assert buckets["0.005"] == 2
    assert buckets["0.25"] == 2
    assert buckets["0.5"] == 3
    assert buckets["10.0"] == 4
    assert buckets["+Inf"] == 5
    labels = {"method": "GET", "route": "/items/{id}", "status_code": "200"}
    assert value(families, "http_server_request_duration_seconds_sum", **labels) == (
        pytest.approx(0.001 + 0.005 + 0.3 + 10.0 + 11.0)
    )


def _le(bound: float) -> str:
    return repr(float(bound))


async def test_custom_buckets_and_namespace(registry: CollectorRegistry) -> None:
    sink = PrometheusSink(registry=registry, namespace="shop", buckets=(0.1, 1))
    sink(finished(duration=0.5))
    sink(AuthSucceeded(component="a", scheme="jwt", subject="u"))
    families = await scrape(registry)
    buckets = [
        s.labels["le"]
        for s in families["shop_http_server_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert buckets == ["0.1", "1.0", "+Inf"]
    assert value(families, "shop_auth_successes_total", scheme="jwt") == 1
    assert all(name.startswith("shop_") for name in families)


@pytest.mark.parametrize(
    ("make", "sample", "label"),
    [
        (lambda i: finished(route=f"/r{i}/{{id}}"), "http_server_request_duration_seconds_count",
         "route"),
        (lambda i: finished(route=f"/r{i}", status=500, error_type=f"E{i}"),
         "http_server_errors_total", "route"),
        (lambda i: replace(decided(True), policy=f"p{i}"), "ratelimit_decisions_total",
         "policy"),
        (lambda i: BreakerTransitioned(component="b", name=f"b{i}", previous="closed",
                                       state="open"), "circuit_breaker_transitions_total",
         "name"),
        (lambda i: CacheAccessed(component="c", name=f"c{i}", outcome="hit"),
         "cache_lookups_total", "name"),
        (lambda i: AuthFailed(component="a", scheme="jwt", reason=f"why{i}"),
         "auth_failures_total", "reason"),
        (lambda i: HealthChecked(component="h", check=f"c{i}:x", status="pass", duration=0.1,
                                 observed_value=1.0), "health_check_observed_value", "check"),
    ],
    ids=["routes", "errors", "policies", "breakers", "caches", "auth", "health"],
)  # fmt: skip
async def test_label_cardinality_stays_bounded(
    registry: CollectorRegistry, make: Any, sample: str, label: str
) -> None:
    sink = PrometheusSink(registry=registry, max_series=100)
    for i in range(10_000):
        sink(make(i))
    families = await scrape(registry)
    labels = series(families, sample)
    assert len(labels) <= 100 * 4 + 4  # cached sets (x pre-created children) plus the folded
    assert any(entry[label] == "other" for entry in labels)
    if sample.endswith(("_total", "_count")):
        assert sum(s.value for s in samples(families, sample)) == 10_000


async def test_rate_limiter_end_to_end(
    registry: CollectorRegistry, sink: PrometheusSink, clock: ManualClock
) -> None:
    limiter = RateLimiter("2/minute", name="api", clock=clock, listeners=[sink])
    shadow = RateLimiter("1/minute", name="new", clock=clock, shadow=True, listeners=[sink])
    for _ in range(3):
        await limiter.hit("ip:1")
        shadow.sync.hit("ip:1")
    families = await scrape(registry)
    assert value(families, "ratelimit_decisions_total", policy="api", outcome="allowed") == 2
    assert value(families, "ratelimit_decisions_total", policy="api", outcome="denied") == 1
    assert value(families, "ratelimit_decisions_total", policy="new", outcome="allowed") == 1
    new_denied = value(families, "ratelimit_decisions_total", policy="new", outcome="shadow_denied")
    assert new_denied == 2


@pytest.mark.redis
async def test_rate_limiter_on_an_unreachable_redis_is_degraded(
    registry: CollectorRegistry, sink: PrometheusSink
) -> None:
    from sysdesign_kit.ratelimit.redis import RedisBackend

    # Port 1 on loopback refuses at once: a real outage without a server to stop.
    backend = RedisBackend.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    limiter = RateLimiter("5/minute", name="api", backend=backend, listeners=[sink])
    try:
        assert (await limiter.hit("ip:1")).allowed
    finally:
        await backend.aclose()
    families = await scrape(registry)
    assert value(families, "ratelimit_decisions_total", policy="api", outcome="degraded") == 1
    labels = {"component": "ratelimit:api", "backend": "redis", "outcome": "fail_open"}
    assert value(families, "backend_errors_total", **labels) == 1


async def test_unknown_events_are_ignored_and_subclasses_handled(
    registry: CollectorRegistry, sink: PrometheusSink
) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True, slots=True)
    class Custom(Event):
        detail: str

    @dataclass(frozen=True, slots=True)
    class TenantAuthFailed(AuthFailed):
        tenant: str

    sink(Custom(component="x", detail="y"))
    for _ in range(2):
        sink(TenantAuthFailed(component="a", scheme="jwt", reason="expired", tenant="t"))
    families = await scrape(registry)
    assert value(families, "auth_failures_total", scheme="jwt", reason="expired") == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"namespace": "1shop"}, "namespace"),
        ({"namespace": "shop-api"}, "namespace"),
        ({"buckets": ()}, "at least one"),
        ({"buckets": (1.0, 0.5)}, "strictly increasing"),
        ({"buckets": (0.1, 0.1)}, "strictly increasing"),
        ({"buckets": (0.1, math.inf)}, "finite"),
        ({"buckets": (0.1, math.nan)}, "finite"),
        ({"buckets": ("0.1",)}, "finite"),
        ({"max_series": 0}, "max_series"),
        ({"max_series": 1.5}, "max_series"),
    ],
)
def test_bad_configuration_is_a_configuration_error(
    registry: CollectorRegistry, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PrometheusSink(registry=registry, **kwargs)
    assert not list(registry.collect())


async def test_a_second_sink_on_one_registry_is_refused_cleanly(
    registry: CollectorRegistry, sink: PrometheusSink
) -> None:
    with pytest.raises(ConfigurationError, match="one PrometheusSink per registry"):
        PrometheusSink(registry=registry)
    other = PrometheusSink(registry=registry, namespace="second")
    other(AuthSucceeded(component="a", scheme="jwt", subject="u"))
    families = await scrape(registry)
    assert value(families, "second_auth_successes_total", scheme="jwt") == 1


def test_known_methods_follow_the_same_setting_as_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET, PURGE")
    registry = CollectorRegistry()
    sink = PrometheusSink(registry=registry)
    for method in ("PURGE", "POST"):
        sink(RequestFinished("http", method, "/x", "r", 200, 0.01))
    samples = {
        sample.labels["method"]
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if sample.name == "http_server_request_duration_seconds_count"
    }
    assert samples == {"PURGE", "_OTHER"}
