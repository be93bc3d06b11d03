"""Service routing: the route table's matching, and the router's dispatch, 404 and 400."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway.proxy import UPSTREAM_PATH_SCOPE_KEY, ReverseProxy
from sysdesign_kit.gateway.routing import (
    ROUTE_SCOPE_KEY,
    SEED_ROUTES,
    ServiceRoute,
    ServiceRouter,
    ServiceRoutes,
)
from tests.gateway.upstream_server import Served, Upstream

SEED = ServiceRoutes(SEED_ROUTES)


@pytest.mark.parametrize(
    ("path", "service"),
    [
        (b"/api/v1/users", "users"),
        (b"/api/v1/users/", "users"),
        (b"/api/v1/users/7", "users"),
        (b"/api/v1/products/12/reviews", "products"),
        (b"/api/v1/orders", "orders"),
        (b"/api/v1/payments/p-1", "payments"),
        (b"/api/v1/users%2F7", None),  # not a segment boundary
        (b"/api/v1/usersX", None),
        (b"/api/v1/%75sers/7", None),  # an escaped prefix matches nothing
        (b"/api/v1%2Fusers/7", None),
        (b"/api/v1//users/7", None),
        (b"/api/v2/users/7", None),
        (b"/", None),
        (b"", None),
    ],
)
def test_seed_table(path: bytes, service: str | None) -> None:
    found = SEED.match(path)
    assert (found.route.service if found else None) == service
    if found:
        assert found.upstream_path == path  # prefixes are kept by default


@pytest.mark.parametrize(
    ("path", "upstream_path"),
    [
        (b"/api/v1/users/7", b"/7"),
        (b"/api/v1/users", b"/"),
        (b"/api/v1/users/", b"/"),
        (b"/api/v1/users/a%2Fb/c", b"/a%2Fb/c"),
    ],
)
def test_strip_prefix(path: bytes, upstream_path: bytes) -> None:
    table = ServiceRoutes([ServiceRoute("/api/v1/users/*", "users", strip_prefix=True)])
    found = table.match(path)
    assert found is not None
    assert found.upstream_path == upstream_path


def test_most_specific_route_wins() -> None:
    table = ServiceRoutes(
        [
            ServiceRoute("/", "default"),
            ServiceRoute("/api/{version}/users", "any-version"),
            ServiceRoute("/api/v1/users", "users"),
            ServiceRoute("/api/v1/users/admin", "admin"),
            ServiceRoute("/api/{version}/users/{id}/avatar", "avatars"),
        ]
    )

    def service(path: bytes) -> str | None:
        found = table.match(path)
        return found.route.service if found else None

    assert service(b"/api/v1/users/admin/x") == "admin"
    assert service(b"/api/v1/users/7") == "users"
    assert service(b"/api/v3/users/7") == "any-version"
    assert service(b"/api/v3/users/7/avatar") == "avatars"
    assert service(b"/api/v1/users/7/avatar") == "avatars"  # more segments beat literals
    assert service(b"/static/app.js") == "default"
    assert service(b"/api/v3/usersX") == "default"


def test_template_prefix_is_stripped_on_its_own_length() -> None:
    table = ServiceRoutes([ServiceRoute("/api/{version}/users/*", "users", strip_prefix=True)])
    found = table.match(b"/api/v2/users/7?")
    assert found is not None
    assert found.upstream_path == b"/7?"


@pytest.mark.parametrize(
    "pattern",
    ["", "api/v1", "/api//v1", "/api/../v1", "/api/v 1", "/api/{1x}", "/api/%75sers", "/a?b"],
)
def test_bad_patterns_refused(pattern: str) -> None:
    with pytest.raises(ConfigurationError):
        ServiceRoute(pattern, "svc")


def test_bad_tables_refused() -> None:
    with pytest.raises(ConfigurationError, match="service name"):
        ServiceRoute("/a", "")
    with pytest.raises(ConfigurationError, match="duplicates"):
        ServiceRoutes([ServiceRoute("/a/*", "x"), ServiceRoute("/a", "y")])
    with pytest.raises(ConfigurationError, match="duplicates"):
        ServiceRoutes([ServiceRoute("/a/{x}", "x"), ServiceRoute("/a/{y}", "y")])
    with pytest.raises(ConfigurationError, match="Route objects"):
        ServiceRoutes(["/a"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="without an app"):
        ServiceRouter(SEED_ROUTES, {"users": _Recorder()})


class _Recorder:
    """A service app that notes the scope it got and answers 200."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.closed = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(dict(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def aclose(self) -> None:
        self.closed = True


def _services() -> dict[str, _Recorder]:
    return {name: _Recorder() for name in ("users", "products", "orders", "payments")}


async def _call(app: Any, scope: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    base = {"type": "http", "method": "GET", "headers": [], "query_string": b""}
    await app({**base, **scope}, receive, send)
    start = sent[0]
    headers = {n.decode(): v.decode() for n, v in start.get("headers", [])}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def test_router_dispatches_by_raw_path() -> None:
    services = _services()
    router = ServiceRouter(SEED_ROUTES, services)
    status, _, _ = await _call(
        router, {"path": "/api/v1/orders/a/b", "raw_path": b"/api/v1/orders/a%2Fb"}
    )
    assert status == 200
    (scope,) = services["orders"].scopes
    assert scope[ROUTE_SCOPE_KEY].service == "orders"
    assert scope[UPSTREAM_PATH_SCOPE_KEY] == b"/api/v1/orders/a%2Fb"
    # no raw_path from the server: the decoded path, escaped again
    await _call(router, {"path": "/api/v1/users/a b"})
    assert services["users"].scopes[0][UPSTREAM_PATH_SCOPE_KEY] == b"/api/v1/users/a%20b"


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/api/v1/users/../payments/1", b"/api/v1/users/../payments/1"),
        ("/api/v1/users/../payments/1", b"/api/v1/users/%2e%2E/payments/1"),
        ("/api/v1/users/./x", b"/api/v1/users/%2E/x"),
        ("/api/v1/users/..", b"/api/v1/users/.."),
    ],
)
async def test_dot_segments_refused(path: str, raw_path: bytes) -> None:
    services = _services()
    router = ServiceRouter(SEED_ROUTES, services)
    status, headers, body = await _call(router, {"path": path, "raw_path": raw_path})
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert b"dot segments" in body
    assert not any(s.scopes for s in services.values())


async def test_unrouted_paths_get_404_or_the_fallback() -> None:
    status, headers, body = await _call(
        ServiceRouter(SEED_ROUTES, _services()), {"path": "/api/v1/inventory/1"}
    )
    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert b'"status":404' in body
    status, _, body = await _call(
        ServiceRouter(SEED_ROUTES, _services()), {"path": "/x", "method": "HEAD"}
    )
    assert (status, body) == (404, b"")
    fallback = _Recorder()
    router = ServiceRouter(SEED_ROUTES, _services(), fallback=fallback)
    assert (await _call(router, {"path": "/health"}))[0] == 200
    assert fallback.scopes[0]["path"] == "/health"


async def test_unrouted_websocket_is_closed_and_lifespan_closes_services() -> None:
    services = _services()
    router = ServiceRouter(SEED_ROUTES, services)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def nothing() -> dict[str, Any]:
        raise AssertionError("not read")

    await router({"type": "websocket", "path": "/nowhere", "headers": []}, nothing, send)
    assert [(m["type"], m["code"]) for m in sent] == [("websocket.close", 1008)]
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    sent.clear()
    await router({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert all(s.closed for s in services.values())


@pytest.fixture
def two_upstreams() -> Iterator[tuple[Upstream, Upstream, str, str]]:
    users, products = Upstream(), Upstream()
    with Served(users) as served_users, Served(products) as served_products:
        yield users, products, served_users.url, served_products.url


async def test_router_to_real_upstreams(two_upstreams: tuple[Upstream, Upstream, str, str]) -> None:
    users, products, users_url, products_url = two_upstreams
    routes = [
        ServiceRoute("/api/v1/users/*", "users"),
        ServiceRoute("/api/v1/products/*", "products", strip_prefix=True),
    ]
    router = ServiceRouter.to_upstreams(
        {"users": users_url, "products": [products_url]}, routes=routes
    )
    assert isinstance(router.services["users"], ReverseProxy)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(router), base_url="http://gw.example"
    ) as client:
        assert (await client.get("/api/v1/users/7", params={"q": "a/b"})).status_code == 200
        assert (await client.delete("/api/v1/products/12%2F3")).status_code == 200
        missing = await client.get("/api/v1/orders/1")
    await router.aclose()
    assert [(s["method"], s["raw_path"], s["query"]) for s in users.seen] == [
        ("GET", "/api/v1/users/7", "q=a%2Fb")
    ]
    assert [(s["method"], s["raw_path"]) for s in products.seen] == [("DELETE", "/12%2F3")]
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
