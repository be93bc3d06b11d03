from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest

from sysdesign_kit.observability import (
    REQUEST_ID_SCOPE_KEY,
    ObservabilityMiddleware,
    get_request_id,
    new_request_id,
)
from sysdesign_kit.observability.request_id import (
    MAX_REQUEST_ID_LENGTH,
    parse_request_id,
    scope_request_id,
)

GOOD = [
    b"a",
    b"0f8fad5b-d9cb-469f-a165-70867728950e",
    b"req.2024:edge_7-x",
    b"A" * MAX_REQUEST_ID_LENGTH,
]
BAD = [
    b"",
    b"A" * (MAX_REQUEST_ID_LENGTH + 1),
    b"x" * 10_000,
    b"has space",
    b"line\nbreak",
    b"crlf\r\nSet-Cookie: a=b",
    b'"quoted"',
    b"<script>alert(1)</script>",
    b"semi;colon",
    b"\xff\xfe\x00",
    "café".encode(),
    b"tab\there",
]


@pytest.mark.parametrize("value", GOOD)
def test_well_formed_ids_are_accepted(value: bytes) -> None:
    assert parse_request_id(value) == value.decode()


@pytest.mark.parametrize("value", BAD)
def test_malformed_ids_are_refused(value: bytes) -> None:
    assert parse_request_id(value) is None


def test_max_length_is_configurable() -> None:
    assert parse_request_id(b"abcd", max_length=3) is None
    assert parse_request_id(b"abc", max_length=3) == "abc"


def test_fresh_ids_are_unique_and_well_formed() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(parse_request_id(i.encode()) == i and len(i) == 24 for i in ids)


def test_a_forked_child_mints_its_own_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert parse_request_id(child.encode())
    assert child[:16] != new_request_id()[:16]


async def no_body() -> Any:
    return {"type": "http.request", "body": b""}


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    body = f"{scope_request_id(scope)} {get_request_id()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def client(**kwargs: Any) -> httpx.AsyncClient:
    app = ObservabilityMiddleware(echo_app, **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


async def test_a_well_formed_incoming_id_is_kept() -> None:
    async with client() as http:
        reply = await http.get("/", headers={"X-Request-ID": "abc-123"})
    assert reply.headers["x-request-id"] == "abc-123"
    assert reply.text == "abc-123 abc-123"  # in the scope and the context variable


@pytest.mark.parametrize("value", BAD)
async def test_a_malformed_incoming_id_is_replaced_not_echoed(value: bytes) -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", value)]}
    await ObservabilityMiddleware(echo_app)(scope, no_body, send)
    headers = dict(sent[0]["headers"])
    fresh = headers[b"x-request-id"]
    assert fresh != value
    assert not value or value not in sent[1]["body"]
    assert parse_request_id(fresh) == scope[REQUEST_ID_SCOPE_KEY]
    assert sent[1]["body"] == f"{fresh.decode()} {fresh.decode()}".encode()


async def test_untrusted_mode_always_mints() -> None:
    async with client(trust_request_id=False) as http:
        reply = await http.get("/", headers={"X-Request-ID": "abc-123"})
    assert reply.headers["x-request-id"] != "abc-123"


async def test_custom_header_name() -> None:
    async with client(request_id_header="X-Correlation-ID") as http:
        reply = await http.get("/", headers={"X-Correlation-ID": "corr-1"})
    assert reply.headers["x-correlation-id"] == "corr-1"
    assert "x-request-id" not in reply.headers


async def test_request_ids_can_be_turned_off() -> None:
    async with client(request_id=False) as http:
        reply = await http.get("/", headers={"X-Request-ID": "abc-123"})
    assert "x-request-id" not in reply.headers
    assert reply.text == "None None"


async def test_concurrent_requests_each_see_their_own_id() -> None:
    async def slow_echo(scope: Any, receive: Any, send: Any) -> None:
        mine = get_request_id()
        await asyncio.sleep(0)  # let the other requests run in between
        await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": f"{mine} {get_request_id()}".encode()})

    app = ObservabilityMiddleware(slow_echo)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        replies = await asyncio.gather(
            *(http.get("/", headers={"X-Request-ID": f"r{i}"}) for i in range(20))
        )
    assert [r.text for r in replies] == [f"r{i} r{i}" for i in range(20)]
    assert get_request_id() is None
