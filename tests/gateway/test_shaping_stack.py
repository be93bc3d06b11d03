"""The request-shaping layers stacked in the seed's order around a FastAPI app: what the app
sees, and which layer answers which refusal."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
from fastapi import FastAPI, Request

from sysdesign_kit.gateway._respond import Receive, Scope, Send
from sysdesign_kit.gateway.body_limit import BodyLimitMiddleware
from sysdesign_kit.gateway.correlation import CorrelationIdMiddleware
from sysdesign_kit.gateway.headers import PrincipalHeadersMiddleware
from sysdesign_kit.gateway.rbac import AuthorizationMiddleware, Rule
from sysdesign_kit.gateway.validation import ValidationMiddleware, validated_body
from sysdesign_kit.gateway.versioning import VersionMiddleware, api_version
from sysdesign_kit.observability.request_id import get_request_id
from sysdesign_kit.principal import Principal, set_principal


class OrderIn(msgspec.Struct):
    sku: str
    qty: int


def stack() -> Any:
    app = FastAPI()

    @app.post("/api/v1/orders")
    async def create_order(request: Request) -> dict[str, Any]:
        order = validated_body(request.scope)
        return {
            "qty": order.qty,
            "version": api_version(request.scope),
            "user": request.headers.get("x-user-id"),
            "scopes": request.headers.get("x-user-scopes"),
            "request_id": get_request_id(),
            "forwarded_id": request.headers.get("x-request-id"),
        }

    @app.get("/api/v1/products/{id}")
    async def product(id: int, request: Request) -> dict[str, Any]:
        return {"id": id, "user": request.headers.get("x-user-id")}

    shaped: Any = ValidationMiddleware(app, schemas={"POST /api/v1/orders": OrderIn})
    shaped = BodyLimitMiddleware(shaped, max_bytes=256)
    shaped = VersionMiddleware(shaped)
    shaped = PrincipalHeadersMiddleware(shaped)
    shaped = AuthorizationMiddleware(
        shaped,
        rules=[
            Rule("POST /api/v1/orders", scopes="write"),
            Rule("GET /api/v1/products/{id}", scopes="read", anonymous=True),
        ],
        deny_unmatched=True,
        endpoint_checks=False,
    )

    async def authenticate(scope: Scope, receive: Receive, send: Send) -> None:
        for key, value in scope.get("headers", ()):
            if key == b"authorization" and value == b"Bearer writer":
                set_principal(scope, Principal("u-1", scopes=frozenset({"read", "write"})))
        await shaped(scope, receive, send)

    return CorrelationIdMiddleware(authenticate)


WRITER = {"authorization": "Bearer writer"}


async def test_a_request_through_every_layer() -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack()), base_url="http://t"
    ) as http:
        response = await http.post(
            "/api/v1/orders",
            json={"sku": "a", "qty": 3},
            headers={**WRITER, "x-user-id": "root", "x-request-id": "trace-1"},
        )
    assert response.status_code == 200
    assert response.json() == {
        "qty": 3,
        "version": "1",
        "user": "u-1",
        "scopes": "read write",
        "request_id": "trace-1",
        "forwarded_id": "trace-1",
    }
    assert response.headers["x-request-id"] == "trace-1"


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", "/api/v1/orders", {}, b'{"sku":"a","qty":1}', 401),
        ("POST", "/api/v1/orders", WRITER, b'{"sku":"a","qty":"x"}', 422),
        ("POST", "/api/v1/orders", WRITER, b"{", 400),
        ("POST", "/api/v1/orders", {**WRITER, "content-type": "text/plain"}, b"{}", 415),
        ("POST", "/api/v1/orders", WRITER, b'{"sku":"' + b"a" * 300 + b'","qty":1}', 413),
        ("GET", "/api/v9/products/1", {}, b"", 403),
        ("GET", "/api/v1/products/1", {"x-user-id": "root"}, b"", 200),
        ("GET", "/api/v1/nothing", WRITER, b"", 403),
    ],
)
async def test_refusals_come_from_the_right_layer(
    method: str, path: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    headers = {"content-type": "application/json", **headers}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stack()), base_url="http://t"
    ) as http:
        response = await http.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["x-request-id"]
    if status == 200:
        assert response.json() == {"id": 1, "user": None}  # the spoofed header never arrives
    else:
        assert response.headers["content-type"] == "application/problem+json"
