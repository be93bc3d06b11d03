"""AuthorizationMiddleware: the rule table, 401/403 answers per RFC 6750, deny by default,
dry runs, and the per-endpoint decorator and FastAPI dependency."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from sysdesign_kit.errors import ConfigurationError, Forbidden
from sysdesign_kit.events import Event
from sysdesign_kit.gateway._respond import Message, Receive, Scope, Send
from sysdesign_kit.gateway.rbac import (
    AccessDenied,
    AccessPolicy,
    AuthorizationMiddleware,
    Rule,
    authorization_error_handler,
    require,
    requires,
    rules_from_routes,
)
from sysdesign_kit.principal import Principal, set_principal

PRINCIPALS = {
    "reader": Principal("u-reader", scopes=frozenset({"read"})),
    "writer": Principal("u-writer", scopes=frozenset({"read", "write"})),
    "admin": Principal("u-admin", scopes=frozenset({"read"}), roles=frozenset({"admin"})),
    "analyst": Principal("u-analyst", roles=frozenset({"analyst"})),
    "nobody": Principal("u-nobody"),
}

DEMO_RULES = [
    Rule("GET /api/v1/products/{id}", scopes="read", anonymous=True),
    Rule("POST /api/v1/orders", scopes="write"),
    Rule("DELETE /api/v1/products/{id}", roles="admin"),
    Rule("GET /api/v1/reports", permissions="reports:read"),
    Rule("GET /health/{rest:path}", anonymous=True),
    Rule("* /api/v1/me"),
]
ROLE_PERMISSIONS = {"analyst": "reports:read reports:export", "admin": ["reports:read"]}


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def with_principal(app: Any) -> Any:
    """Plays the authentication layer: ``x-test-as: <name>`` becomes that principal."""

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        for key, value in scope.get("headers", ()):
            if key == b"x-test-as":
                set_principal(scope, PRINCIPALS[value.decode()])
        await app(scope, receive, send)

    return outer


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def raw(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight through ASGI (httpx would normalise ``..`` and ``//``)."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], dict(sent[0]["headers"]), body


def demo(**kwargs: Any) -> httpx.AsyncClient:
    kwargs.setdefault("rules", DEMO_RULES)
    kwargs.setdefault("role_permissions", ROLE_PERMISSIONS)
    return client(with_principal(AuthorizationMiddleware(ok_app, **kwargs)))


SCOPE_CHALLENGE = 'Bearer error="insufficient_scope", scope="{}"'
TABLE = [
    # who, method, path, status, WWW-Authenticate
    (None, "GET", "/api/v1/products/7", 200, None),
    ("reader", "GET", "/api/v1/products/7", 200, None),
    ("nobody", "GET", "/api/v1/products/7", 403, SCOPE_CHALLENGE.format("read")),
    (None, "HEAD", "/api/v1/products/7", 200, None),
    ("nobody", "HEAD", "/api/v1/products/7", 403, SCOPE_CHALLENGE.format("read")),
    (None, "POST", "/api/v1/orders", 401, "Bearer"),
    ("reader", "POST", "/api/v1/orders", 403, SCOPE_CHALLENGE.format("write")),
    ("writer", "POST", "/api/v1/orders", 200, None),
    ("writer", "POST", "/api/v1/orders/", 200, None),
    ("reader", "POST", "//api//v1/orders", 403, SCOPE_CHALLENGE.format("write")),
    (None, "DELETE", "/api/v1/products/7", 401, "Bearer"),
    ("writer", "DELETE", "/api/v1/products/7", 403, None),
    ("admin", "DELETE", "/api/v1/products/7", 200, None),
    ("admin", "GET", "/api/v1/reports", 200, None),
    ("analyst", "GET", "/api/v1/reports", 200, None),
    ("writer", "GET", "/api/v1/reports", 403, None),
    (None, "GET", "/health", 200, None),
    (None, "GET", "/health/ready", 200, None),
    (None, "PATCH", "/api/v1/me", 401, "Bearer"),
    ("nobody", "PATCH", "/api/v1/me", 200, None),
    (None, "GET", "/not/in/the/table", 200, None),
    (None, "GET", "/api/v1/users/../products/7", 400, None),
    ("admin", "DELETE", "/api/v1/products/./7", 400, None),
]


@pytest.mark.parametrize(("who", "method", "path", "status", "challenge"), TABLE)
async def test_rule_table(
    who: str | None, method: str, path: str, status: int, challenge: str | None
) -> None:
    app = with_principal(
        AuthorizationMiddleware(ok_app, rules=DEMO_RULES, role_permissions=ROLE_PERMISSIONS)
    )
    headers = [(b"x-test-as", who.encode())] if who else []
    got, response_headers, body = await raw(app, method, path, headers)
    assert got == status
    www = response_headers.get(b"www-authenticate")
    assert (www.decode() if www else None) == challenge
    if status != 200:
        assert response_headers[b"content-type"] == b"application/problem+json"
        assert response_headers[b"cache-control"] == b"no-store"
        if method != "HEAD":
            problem = json.loads(body)
            assert problem["status"] == status
            if challenge and "scope=" in challenge:
                assert problem["required_scope"] in challenge
        else:
            assert body == b""


@pytest.mark.parametrize(("status", "detail"), [(403, "no rule grants access"), (404, None)])
async def test_deny_by_default(status: int, detail: str | None) -> None:
    async with demo(deny_unmatched=True, unmatched_status=status) as http:
        assert (await http.get("/api/v1/products/1")).status_code == 200
        response = await http.get("/api/v1/unknown", headers={"x-test-as": "admin"})
        assert response.status_code == status
        assert "www-authenticate" not in response.headers
        if detail:
            assert response.json()["detail"] == detail


async def test_an_empty_policy_lets_everything_through() -> None:
    status, _, _ = await raw(AuthorizationMiddleware(ok_app), "GET", "/x/../y")
    assert status == 200


async def test_realm_is_named_in_challenges() -> None:
    async with demo(realm="shop") as http:
        assert (await http.post("/api/v1/orders")).headers[
            "www-authenticate"
        ] == 'Bearer realm="shop"'
        response = await http.post("/api/v1/orders", headers={"x-test-as": "reader"})
        assert response.headers["www-authenticate"] == (
            'Bearer realm="shop", error="insufficient_scope", scope="write"'
        )


async def test_websocket_handshakes_are_checked() -> None:
    app = with_principal(AuthorizationMiddleware(ok_app, rules=[Rule("GET /ws", scopes="read")]))
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    scope: Scope = {"type": "websocket", "path": "/ws", "headers": []}
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]
    sent.clear()
    await app({**scope, "extensions": {"websocket.http.response": {}}}, receive, send)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    sent.clear()
    await app({**scope, "headers": [(b"x-test-as", b"reader")]}, receive, send)
    assert sent[0] == {"type": "websocket.accept"}


async def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        return {}

    async def ignore(message: Message) -> None:
        pass

    await AuthorizationMiddleware(app, rules=DEMO_RULES, deny_unmatched=True)(
        {"type": "lifespan"}, nothing, ignore
    )
    assert seen == ["lifespan"]


async def test_dry_run_refuses_nothing_but_reports(caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = []
    caplog.set_level(logging.WARNING, "sysdesign_kit.gateway.rbac")
    async with demo(dry_run=True, deny_unmatched=True, listeners=[events.append]) as http:
        assert (
            await http.post("/api/v1/orders", headers={"x-test-as": "reader"})
        ).status_code == 200
        assert (await http.get("/elsewhere")).status_code == 200
        assert (await http.get("/api/v1/products/1")).status_code == 200
    assert events == [
        AccessDenied("rbac", "POST", "POST /api/v1/orders", "u-reader", "insufficient_scope", True),
        AccessDenied("rbac", "GET", "", "", "unmatched", True),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "would refuse POST POST /api/v1/orders (insufficient_scope" in messages[0]


async def test_enforced_refusals_are_published_too() -> None:
    events: list[Event] = []
    async with demo(listeners=[events.append]) as http:
        await http.delete("/api/v1/products/1", headers={"x-test-as": "reader"})
    assert events == [
        AccessDenied("rbac", "DELETE", "DELETE /api/v1/products/{id}", "u-reader", "missing_role")
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Rule("products"), "METHOD"),
        (lambda: Rule("G@T /x"), "is not an HTTP method"),
        (lambda: Rule("GET /x/{id:hex}"), "unknown convertor"),
        (lambda: Rule("GET /x/{id"), "unbalanced"),
        (lambda: Rule("GET /x/../y"), "segment"),
        (lambda: Rule("GET /x", scopes=["read", ""]), "non-empty name"),
        (lambda: Rule("GET /x", roles=["two words"]), "non-empty name"),
        (lambda: AccessPolicy([Rule()]), "needs a route"),
        (lambda: AccessPolicy(["GET /x"]), "Rule instances"),  # type: ignore[list-item]
        (lambda: AccessPolicy(unmatched_status=401), "403 or 404"),
        (lambda: AccessPolicy(role_permissions={"a": [" x"]}), "non-empty name"),
    ],
)
def test_configuration_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_rule_names_accept_strings_and_iterables() -> None:
    rule = Rule("GET,POST /x", scopes="read  write", roles={"admin"})
    assert rule.scopes == {"read", "write"}
    assert rule.roles == {"admin"}
    policy = AccessPolicy([rule], role_permissions=ROLE_PERMISSIONS)
    assert policy.rules_for("POST", "/x") == (rule,)
    assert policy.rules_for("PUT", "/x") is None
    assert policy.permissions_of(PRINCIPALS["analyst"]) == {"reports:read", "reports:export"}


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PATCH", "OPTIONS", "BREW"]),
    path=st.text(alphabet="/.%ab{}1-_~ é\x00", max_size=40).map(lambda p: "/" + p),
    who=st.sampled_from([None, *PRINCIPALS]),
    deny=st.booleans(),
)
async def test_any_path_gets_a_decision_never_an_error(
    method: str, path: str, who: str | None, deny: bool
) -> None:
    app = with_principal(
        AuthorizationMiddleware(
            ok_app, rules=DEMO_RULES, role_permissions=ROLE_PERMISSIONS, deny_unmatched=deny
        )
    )
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    headers = [(b"x-test-as", who.encode())] if who else []
    await app({"type": "http", "method": method, "path": path, "headers": headers}, receive, send)
    assert sent[0]["status"] in (200, 400, 401, 403)


# -- per-endpoint requirements -----------------------------------------------------------

calls: list[str] = []


@requires(roles="admin")
async def delete_product(request: Request) -> PlainTextResponse:
    calls.append("delete")
    return PlainTextResponse("deleted")


@requires(scopes="read")
@requires(roles="admin")
def admin_report(request: Request) -> PlainTextResponse:
    calls.append("report")
    return PlainTextResponse("report")


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Mount(
                "/api",
                routes=[
                    Route("/products/{id:int}", delete_product, methods=["DELETE"]),
                    Route("/report", admin_report),
                ],
            )
        ]
    )


def test_routes_are_found_with_their_mount_prefix() -> None:
    found = {(rule.route, rule.roles, rule.scopes) for rule in rules_from_routes(starlette_app())}
    assert found == {
        ("DELETE /api/products/{id:int}", frozenset({"admin"}), frozenset()),
        ("GET,HEAD /api/report", frozenset({"admin"}), frozenset()),
        ("GET,HEAD /api/report", frozenset(), frozenset({"read"})),
    }


@pytest.mark.parametrize("discover", [True, False])
@pytest.mark.parametrize(
    ("who", "method", "path", "status", "called"),
    [
        ("reader", "DELETE", "/api/products/3", 403, []),
        (None, "DELETE", "/api/products/3", 401, []),
        ("admin", "DELETE", "/api/products/3", 200, ["delete"]),
        ("admin", "GET", "/api/report", 200, ["report"]),
        ("reader", "GET", "/api/report", 403, []),
        ("analyst", "GET", "/api/report", 403, []),
    ],
)
async def test_the_decorator_on_starlette_endpoints(
    discover: bool, who: str | None, method: str, path: str, status: int, called: list[str]
) -> None:
    app = starlette_app()
    app.add_middleware(AuthorizationMiddleware, routes=app if discover else None)
    calls.clear()
    headers = {"x-test-as": who} if who else {}
    async with client(with_principal(app)) as http:
        response = await http.request(method, path, headers=headers)
    assert response.status_code == status
    assert calls == called
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_the_decorator_needs_the_middleware() -> None:
    with pytest.raises(ConfigurationError, match="needs AuthorizationMiddleware"):
        await delete_product(None)  # type: ignore[arg-type]


async def test_the_decorator_in_a_dry_run_calls_the_endpoint() -> None:
    events: list[Event] = []
    app = starlette_app()
    app.add_middleware(AuthorizationMiddleware, dry_run=True, listeners=[events.append])
    calls.clear()
    async with client(with_principal(app)) as http:
        response = await http.delete("/api/products/3", headers={"x-test-as": "reader"})
    assert response.status_code == 200
    assert calls == ["delete"]
    assert [e.reason for e in events if isinstance(e, AccessDenied)] == ["missing_role"]


def fastapi_app(*, middleware: bool, discover: bool = True) -> FastAPI:
    app = FastAPI()

    @app.post("/orders", dependencies=[Depends(require(scopes="write"))])
    async def create_order() -> dict[str, str]:
        calls.append("order")
        return {"ok": "yes"}

    @app.get("/me")
    async def me(principal: Any = Depends(require())) -> dict[str, str]:  # noqa: B008
        return {"subject": principal.subject}

    @app.get("/reports")
    async def reports(principal: Any = Depends(require(permissions="reports:read"))) -> str:  # noqa: B008
        return "reports"

    @app.delete("/products/{id}")
    @requires(roles="admin")
    async def delete(id: int) -> dict[str, int]:
        calls.append("delete")
        return {"deleted": id}

    if middleware:
        app.add_middleware(
            AuthorizationMiddleware,
            role_permissions=ROLE_PERMISSIONS,
            routes=app if discover else None,
        )
    else:
        app.add_exception_handler(Forbidden, authorization_error_handler)
    return app


@pytest.mark.parametrize("discover", [True, False])
@pytest.mark.parametrize(
    ("who", "method", "path", "status", "called"),
    [
        ("reader", "POST", "/orders", 403, []),
        ("writer", "POST", "/orders", 200, ["order"]),
        ("writer", "DELETE", "/products/5", 403, []),
        ("admin", "DELETE", "/products/5", 200, ["delete"]),
        (None, "GET", "/me", 401, []),
        ("nobody", "GET", "/me", 200, []),
        ("analyst", "GET", "/reports", 200, []),
        ("writer", "GET", "/reports", 403, []),
    ],
)
async def test_fastapi_dependency_and_decorator(
    discover: bool, who: str | None, method: str, path: str, status: int, called: list[str]
) -> None:
    calls.clear()
    headers = {"x-test-as": who} if who else {}
    async with client(with_principal(fastapi_app(middleware=True, discover=discover))) as http:
        response = await http.request(method, path, headers=headers)
    assert response.status_code == status
    assert calls == called
    if path == "/orders" and status == 403:
        assert response.headers["www-authenticate"] == SCOPE_CHALLENGE.format("write")
        assert response.json()["required_scope"] == "write"
    if path == "/me" and status == 200:
        assert response.json() == {"subject": "u-nobody"}


async def test_fastapi_dependency_without_the_middleware() -> None:
    app = fastapi_app(middleware=False)
    async with client(with_principal(app)) as http:
        response = await http.post("/orders", headers={"x-test-as": "reader"})
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == SCOPE_CHALLENGE.format("write")
        assert response.headers["content-type"] == "application/problem+json"
        assert (await http.post("/orders", headers={"x-test-as": "writer"})).status_code == 200
    with pytest.raises(ConfigurationError, match="role mapping"):
        async with client(with_principal(app)) as http:
            await http.get("/reports", headers={"x-test-as": "analyst"})


async def test_a_refusal_after_the_response_started_is_raised() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise Forbidden("late", scope="admin")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    with pytest.raises(Forbidden):
        await AuthorizationMiddleware(app)(
            {"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send
        )
    assert len(sent) == 1


async def test_a_ready_policy_and_a_foreign_principal_object() -> None:
    policy = AccessPolicy([Rule("GET /x", scopes="read")])
    app = AuthorizationMiddleware(ok_app, rules=policy)
    assert app.policy is policy

    async def impostor(scope: Scope, receive: Receive, send: Send) -> None:
        scope["sysdesign_kit.principal"] = {"subject": "root", "scopes": ["read"]}
        await app(scope, receive, send)

    status, _, _ = await raw(impostor, "GET", "/x")
    assert status == 401


async def test_authentication_failures_raised_by_the_app_are_answered() -> None:
    from sysdesign_kit.errors import AuthenticationFailed

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AuthenticationFailed("expired at 12:00", description="the token expired")

    status, headers, body = await raw(AuthorizationMiddleware(app, realm="api"), "GET", "/")
    assert status == 401
    assert headers[b"www-authenticate"] == (
        b'Bearer realm="api", error="invalid_token", error_description="the token expired"'
    )
    assert json.loads(body)["detail"] == "the token expired"


async def test_the_exception_handler_answers_authentication_failures_and_reraises_others() -> None:
    from sysdesign_kit.errors import AuthenticationFailed

    response = await authorization_error_handler(None, AuthenticationFailed("x", error=""))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(KeyError):
        await authorization_error_handler(None, KeyError("other"))


def test_routes_with_convertors_of_the_apps_own_are_left_to_the_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Odd:
        path = "/odd/{value:hex}"
        methods = frozenset({"GET"})
        endpoint = delete_product

    assert rules_from_routes([Odd(), object()]) == []
    assert "checked in the endpoint" in caplog.text


async def test_without_endpoint_checks_only_the_table_applies() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise Forbidden("from the endpoint")

    middleware = with_principal(
        AuthorizationMiddleware(app, rules=[Rule("GET /x", scopes="read")], endpoint_checks=False)
    )
    status, _, _ = await raw(middleware, "GET", "/x")
    assert status == 401
    with pytest.raises(Forbidden):
        await raw(middleware, "GET", "/x", [(b"x-test-as", b"reader")])


async def test_endpoint_checks_default_to_on_once_requires_or_require_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sysdesign_kit.gateway.rbac as rbac

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise Forbidden("from the endpoint")

    middleware = AuthorizationMiddleware(app)
    monkeypatch.setattr(rbac, "_in_use", False)
    with pytest.raises(Forbidden):
        await raw(middleware, "GET", "/x")
    require(scopes="read")
    assert rbac._in_use
    status, _, _ = await raw(middleware, "GET", "/x")
    assert status == 403
