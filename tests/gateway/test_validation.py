"""ValidationMiddleware: 415 / 413 / 400 / 422 per route, field paths, the decoded values in
the scope, and the body replayed to the app."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import Message, Receive, Scope, Send
from sysdesign_kit.gateway.validation import (
    BODY_SCOPE_KEY,
    Schema,
    ValidationMiddleware,
    validated_body,
    validated_query,
)


class Item(msgspec.Struct):
    sku: str
    qty: int


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Item]
    note: str | None = None


class Page(msgspec.Struct):
    limit: int = 10
    tag: list[str] = []
    active: bool = False


async def create_order(request: Request) -> JSONResponse:
    order = validated_body(request.scope)
    raw = await request.json()  # the replayed body parses again
    return JSONResponse(
        {"items": len(order.items), "same": raw["items"][0]["sku"] == order.items[0].sku}
    )


async def list_products(request: Request) -> JSONResponse:
    page = validated_query(request.scope)
    return JSONResponse({"limit": page.limit, "tag": page.tag, "active": page.active})


async def unchecked(request: Request) -> JSONResponse:
    return JSONResponse(
        {"body": (await request.body()).decode(), "scope": validated_body(request.scope)}
    )


def app(**kwargs: Any) -> httpx.AsyncClient:
    inner = Starlette(
        routes=[
            Route("/orders", create_order, methods=["POST"]),
            Route("/orders", unchecked, methods=["PUT"]),
            Route("/products", list_products),
            Route("/search", list_products, methods=["POST"]),
            Route("/bulk/{id}", unchecked, methods=["POST"]),
        ]
    )
    kwargs.setdefault(
        "schemas",
        [
            Schema("POST /orders", body=OrderIn),
            Schema("GET /products", query=Page),
            Schema("POST /search", body=dict[str, int], query=Page),
            Schema("POST /bulk/{id}", body=list[int]),
        ],
    )
    middleware = ValidationMiddleware(inner, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://t")


GOOD = {"items": [{"sku": "a1", "qty": 2}]}
JSON = {"content-type": "application/json"}


async def test_a_valid_body_is_decoded_once_and_replayed() -> None:
    async with app() as http:
        response = await http.post("/orders", json=GOOD)
    assert response.status_code == 200
    assert response.json() == {"items": 1, "same": True}


@pytest.mark.parametrize(
    ("content", "headers", "status", "errors"),
    [
        (b'{"items":[{"sku":"a","qty":"x"}]}', JSON, 422, [("body", "$.items[0].qty")]),
        (b'{"items":[{"sku":"a"}]}', JSON, 422, [("body", "$.items[0].qty")]),
        (b"{}", JSON, 422, [("body", "$.items")]),
        (b'{"items":[],"admin":true}', JSON, 422, [("body", "$")]),
        (b"[1]", JSON, 422, [("body", "$")]),
        (b"{", JSON, 400, None),
        (b"", JSON, 400, None),
        (b"\xff\xfe", JSON, 400, None),
        (b'{"items":[]} trailing', JSON, 400, None),
        (json.dumps(GOOD).encode(), {}, 415, None),
        (json.dumps(GOOD).encode(), {"content-type": "text/plain"}, 415, None),
        (
            json.dumps(GOOD).encode(),
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            None,
        ),
        (
            json.dumps(GOOD).encode(),
            {"content-type": "application/json; charset=latin-1"},
            415,
            None,
        ),
        (json.dumps(GOOD).encode(), {"content-type": "application/json; charset=UTF-8"}, 200, None),
        (json.dumps(GOOD).encode(), {"content-type": "Application/JSON"}, 200, None),
        (json.dumps(GOOD).encode(), {"content-type": "application/vnd.shop+json"}, 200, None),
        (
            json.dumps(GOOD).encode(),
            {"content-type": 'application/json;charset="utf-8"'},
            200,
            None,
        ),
    ],
)
async def test_bodies(
    content: bytes, headers: dict[str, str], status: int, errors: list[tuple[str, str]] | None
) -> None:
    async with app() as http:
        response = await http.post("/orders", content=content, headers=headers)
    assert response.status_code == status
    if status != 200:
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == status
        if errors is not None:
            assert [(e["location"], e["path"]) for e in problem["errors"]] == errors
            assert all(e["detail"] for e in problem["errors"])


async def test_the_error_detail_names_the_problem() -> None:
    async with app() as http:
        response = await http.post("/orders", json={"items": [{"sku": "a", "qty": "x"}]})
    assert response.json()["errors"] == [
        {"location": "body", "path": "$.items[0].qty", "detail": "Expected `int`, got `str`"}
    ]


@pytest.mark.parametrize(
    ("query", "status", "expected"),
    [
        ("", 200, {"limit": 10, "tag": [], "active": False}),
        ("limit=5&tag=a&tag=b&active=true", 200, {"limit": 5, "tag": ["a", "b"], "active": True}),
        ("limit=5&limit=7", 200, {"limit": 5, "tag": [], "active": False}),
        ("tag=%C3%A9&unknown=1", 200, {"limit": 10, "tag": ["é"], "active": False}),
        ("limit=many", 422, [("query", "$.limit")]),
        ("active=perhaps", 422, [("query", "$.active")]),
        ("&".join(f"f{i}=1" for i in range(1001)), 400, None),
    ],
)
async def test_query_strings(query: str, status: int, expected: Any) -> None:
    async with app() as http:
        response = await http.get(f"/products?{query}")
    assert response.status_code == status
    if status == 200:
        assert response.json() == expected
    elif status == 422:
        assert [(e["location"], e["path"]) for e in response.json()["errors"]] == expected


async def test_query_and_body_errors_are_reported_together() -> None:
    async with app() as http:
        response = await http.post("/search?limit=x", json={"a": "b"})
    assert response.status_code == 422
    assert [(e["location"], e["path"]) for e in response.json()["errors"]] == [
        ("query", "$.limit"),
        ("body", "$[...]"),
    ]


async def test_routes_without_a_schema_are_untouched() -> None:
    async with app() as http:
        response = await http.put("/orders", content=b"not json")
    assert response.json() == {"body": "not json", "scope": None}


async def test_a_mapping_of_body_schemas_and_templated_routes() -> None:
    async with app(schemas={"POST /bulk/{id}": list[int]}) as http:
        assert (await http.post("/bulk/7", json=[1, 2])).status_code == 200
        assert (await http.post("/bulk/7", json=["x"])).json()["errors"][0]["path"] == "$[0]"


async def test_oversized_bodies_get_413_declared_or_streamed() -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"[" + b"1," * 10 + b"1]"

    async with app(max_body_bytes=64) as http:
        declared = await http.post("/bulk/1", content=b"[" + b"1," * 100 + b"1]", headers=JSON)
        streamed = await http.post("/bulk/1", content=chunks(), headers=JSON)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["max_bytes"] == 64


async def test_a_client_that_leaves_mid_body_gets_no_answer() -> None:
    sent: list[Message] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b"[1", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async def never(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not run")

    middleware = ValidationMiddleware(never, schemas={"POST /x": list[int]})
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "headers": [(b"content-type", b"application/json")],
    }
    await middleware(scope, receive, send)
    assert sent == []


async def test_after_the_replay_receive_reaches_the_server() -> None:
    seen: list[Message] = []

    async def app_reading_twice(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())
        assert scope[BODY_SCOPE_KEY] == [1]

    messages: list[Message] = [
        {"type": "http.request", "body": b"[1]"},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        pass

    middleware = ValidationMiddleware(app_reading_twice, schemas={"POST /x": list[int]})
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "headers": [(b"content-type", b"application/json")],
    }
    await middleware(scope, receive, send)
    assert seen == [
        {"type": "http.request", "body": b"[1]", "more_body": False},
        {"type": "http.disconnect"},
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schemas": {"POST x": OrderIn}}, "METHOD"),
        ({"schemas": {"POST /x": object()}}, "body type"),
        ({"schemas": [Schema("GET /x", query=dict[str, int])]}, "msgspec.Struct"),
        ({"schemas": ["POST /x"]}, "Schema objects"),
        ({"schemas": {}, "max_body_bytes": 0}, ">= 1"),
        ({"schemas": {}, "max_body_bytes": 1.5}, "an int"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ValidationMiddleware(create_order, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=80),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["items", "sku", "qty", "note", "x"]), inner, max_size=3
                )
            ),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    content_type=st.sampled_from([b"application/json", b"text/plain", b"\xff;charset=\x00", b""]),
    query=st.binary(max_size=40),
)
async def test_any_input_gets_an_answer_not_an_error(
    body: bytes, content_type: bytes, query: bytes
) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body}

    async def send(message: Message) -> None:
        sent.append(message)

    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    middleware = ValidationMiddleware(ok, schemas=[Schema("POST /o", body=OrderIn, query=Page)])
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/o",
        "query_string": query,
        "headers": [(b"content-type", content_type)],
    }
    await middleware(scope, receive, send)
    assert sent[0]["status"] in (200, 400, 415, 422)
