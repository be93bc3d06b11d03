"""metrics_app: the /metrics endpoint, bare, routed and mounted; formats, methods, errors;
and the observability package importing without prometheus-client."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from sysdesign_kit import ConfigurationError
from sysdesign_kit.events import AuthSucceeded
from sysdesign_kit.observability import PrometheusSink, metrics_app
from sysdesign_kit.observability.metrics_endpoint import MetricsApp

PLAIN = "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    PrometheusSink(registry=registry)(AuthSucceeded(component="a", scheme="jwt", subject="u"))
    return registry


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test", follow_redirects=True)


def auth_successes(families: Iterable[Metric]) -> float:
    by_name = {family.name: family for family in families}
    (sample,) = [s for s in by_name["auth_successes"].samples if s.name.endswith("_total")]
    return sample.value


@pytest.mark.parametrize("path", ["/metrics", "/"])
async def test_get_serves_the_text_format(registry: CollectorRegistry, path: str) -> None:
    async with client(metrics_app(registry)) as http:
        reply = await http.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == PLAIN
    assert auth_successes(text_string_to_metric_families(reply.text)) == 1


async def test_head_has_the_headers_of_get_and_no_body(registry: CollectorRegistry) -> None:
    async with client(metrics_app(registry)) as http:
        get = await http.get("/metrics")
        head = await http.head("/metrics")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_405(registry: CollectorRegistry, method: str) -> None:
    async with client(metrics_app(registry)) as http:
        reply = await http.request(method, "/metrics", content=b"x")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert "use GET or HEAD" in reply.text


@pytest.mark.parametrize("path", ["/metricsx", "/other", "/metrics/extra"])
async def test_other_paths_are_404(registry: CollectorRegistry, path: str) -> None:
    async with client(metrics_app(registry)) as http:
        reply = await http.get(path)
    assert reply.status_code == 404
    assert "/metrics" in reply.text


async def test_openmetrics_when_asked(registry: CollectorRegistry) -> None:
    headers = {"accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"}
    async with client(metrics_app(registry)) as http:
        reply = await http.get("/metrics", headers=headers)
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.text.endswith("# EOF\n")
    assert auth_successes(openmetrics_families(reply.text)) == 1  # type: ignore[no-untyped-call]


async def test_gzip_when_accepted(registry: CollectorRegistry) -> None:
    async with client(metrics_app(registry)) as http:
        zipped = await http.get("/metrics", headers={"accept-encoding": "gzip"})
        plain = await http.get("/metrics", headers={"accept-encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.headers["vary"] == "Accept, Accept-Encoding"
    # httpx inflates for us; the wire size is the compressed one
    assert int(zipped.headers["content-length"]) == len(gzip.compress(plain.content))
    assert zipped.text == plain.text


@pytest.mark.parametrize(
    ("framework", "path"),
    [("starlette-route", "/metrics"), ("starlette-mount", "/metrics"),
     ("fastapi-mount", "/metrics/"), ("fastapi-route", "/metrics")],
)  # fmt: skip
async def test_works_inside_starlette_and_fastapi(
    registry: CollectorRegistry, framework: str, path: str
) -> None:
    endpoint = metrics_app(registry)
    app: Any
    if framework == "starlette-route":
        app = Starlette(routes=[Route("/metrics", endpoint)])
    elif framework == "starlette-mount":
        app = Starlette(routes=[Mount("/metrics", endpoint)])
    elif framework == "fastapi-mount":
        app = FastAPI()
        app.mount("/metrics", endpoint)
    else:
        app = FastAPI()
        app.add_route("/metrics", endpoint, methods=["GET", "HEAD"])
    async with client(app) as http:
        reply = await http.get(path)
        head = await http.head(path)
    assert reply.status_code == 200
    assert auth_successes(text_string_to_metric_families(reply.text)) == 1
    assert (head.status_code, head.content) == (200, b"")


async def test_bare_app_answers_lifespan_and_refuses_websockets() -> None:
    app = metrics_app(CollectorRegistry())
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    await app({"type": "websocket", "path": "/metrics", "headers": []}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "websocket.close",
    ]


async def test_a_failing_collector_is_a_plain_500(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("corrupt file")

    registry = CollectorRegistry()
    registry.register(Broken())
    async with client(metrics_app(registry)) as http:
        reply = await http.get("/metrics")
    assert reply.status_code == 500
    assert reply.text == "collecting metrics failed\n"
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_default_registry_is_the_global_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = metrics_app()
    assert isinstance(app, MetricsApp)
    assert app.registry is REGISTRY


def test_multiprocess_dir_that_is_not_a_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="not a directory"):
        metrics_app()


def test_importing_the_package_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, sysdesign_kit.observability as o\n"
        "assert 'prometheus_client' not in sys.modules, 'imported eagerly'\n"
        "assert o.PrometheusSink.__name__ == 'PrometheusSink'\n"
        "assert callable(o.metrics_app)\n"
        "assert 'prometheus_client' in sys.modules\n"
        "try:\n"
        "    o.NoSuchName\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('unknown names must raise AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
