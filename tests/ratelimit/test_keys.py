from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.principal import Principal, set_principal
from sysdesign_kit.ratelimit import (
    ClientIP,
    by_api_key,
    by_ip,
    by_route,
    by_subject,
    by_subject_or_ip,
)
from sysdesign_kit.ratelimit.keys import MAX_PART, safe_key

PROXIES = ["10.0.0.0/8", "2001:db8:ffff::/48", "127.0.0.1"]


def scope_of(peer: str | None = "10.0.0.1", **headers: str | bytes) -> dict[str, Any]:
    raw = [
        (name.replace("_", "-").encode(), v if isinstance(v, bytes) else v.encode("latin-1"))
        for name, v in headers.items()
    ]
    return {
        "type": "http",
        "path": "/items/7",
        "method": "GET",
        "headers": raw,
        "client": (peer, 5000) if peer else None,
    }


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        # trusted peer: walk from the right, skipping trusted hops
        ("10.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
        ("10.0.0.1", "203.0.113.9:4711", "203.0.113.9"),
        ("10.0.0.1", "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # all trusted: left-most
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        ("127.0.0.1", "[2001:db8::1]:443, 2001:db8:ffff::5", "2001:db8::1"),
        ("10.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"),
        # untrusted peer: the header is the client's own claim, ignored
        ("198.51.100.77", "1.2.3.4", "198.51.100.77"),
        ("2001:db8:1::1", "1.2.3.4", "2001:db8:1::1"),
        # garbage: the nearest established hop
        ("10.0.0.1", "not-an-ip", "10.0.0.1"),
        ("10.0.0.1", "203.0.113.9, garbage, 10.0.0.5", "10.0.0.5"),
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", ",,,", "10.0.0.1"),
        ("10.0.0.1", "1.2.3.4.5", "10.0.0.1"),
        ("10.0.0.1", "[::1", "10.0.0.1"),
        ("10.0.0.1", "9" * 5000, "10.0.0.1"),
        ("10.0.0.1", "1.1.1.1," * 2000, "10.0.0.1"),  # over the length bound
    ],
)
def test_x_forwarded_for(peer: str, xff: str, expected: str) -> None:
    assert ClientIP(PROXIES)(scope_of(peer, x_forwarded_for=xff)) == expected


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("for=203.0.113.9", "203.0.113.9"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("for=192.0.2.43, for=10.0.0.9;proto=https;by=10.0.0.1", "192.0.2.43"),
        ('For="_gazonk"', "_gazonk"),
        ("for=_hidden:_port, for=10.0.0.2", "_hidden"),
        ('for="198.51.100.1;x", for=203.0.113.9', "203.0.113.9"),
        ('proto=https;for="[2001:db8::2]";by=_proxy', "2001:db8::2"),
        ("for=unknown", "10.0.0.1"),
        ("by=10.0.0.3", "10.0.0.1"),  # no for= node
        ('for="203.0.113.9', "10.0.0.1"),  # unterminated quote
        ("for=\x00\xff", "10.0.0.1"),
        ("for=_" + "x" * 100, "10.0.0.1"),  # obfuscated but too long
    ],
)
def test_forwarded(forwarded: str, expected: str) -> None:
    client_ip = ClientIP(PROXIES, header="forwarded")
    assert client_ip(scope_of("10.0.0.1", forwarded=forwarded)) == expected


def test_only_the_configured_header_is_read() -> None:
    scope = scope_of("10.0.0.1", forwarded="for=1.1.1.1", x_forwarded_for="2.2.2.2")
    assert ClientIP(PROXIES)(scope) == "2.2.2.2"
    assert ClientIP(PROXIES, header="forwarded")(scope) == "1.1.1.1"


def test_repeated_header_lines_form_one_chain() -> None:
    scope = scope_of("10.0.0.1")
    scope["headers"] = [(b"x-forwarded-for", b"203.0.113.1"), (b"x-forwarded-for", b"10.0.0.9")]
    assert ClientIP(PROXIES)(scope) == "203.0.113.1"


@pytest.mark.parametrize(
    ("peer", "expected"), [(None, "unknown"), ("testclient", "testclient"), ("::1", "::1")]
)
def test_without_trusted_proxies_the_peer_is_the_client(peer: str | None, expected: str) -> None:
    assert ClientIP()(scope_of(peer, x_forwarded_for="1.2.3.4")) == expected
    assert ClientIP(PROXIES)(scope_of(peer, x_forwarded_for="1.2.3.4")) == expected


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "", "1.2.3"])
def test_bad_trusted_proxy_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        ClientIP([bad])


def test_bad_header_choice_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="header="):
        ClientIP(header="x-real-ip")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    ["a" * (MAX_PART + 1), "caf\u00e9", "tab\there", "", b"\xff\xfe", b"x" * 10_000, "\udcff"],
)
def test_safe_key_hashes_what_is_not_short_printable_ascii(value: str | bytes) -> None:
    key = safe_key("p:", value)
    assert key.startswith("p:~")
    assert len(key) == 3 + 32
    assert key.isascii()
    assert safe_key("p:", value) == key


@pytest.mark.parametrize("value", ["alice", "203.0.113.9", b"bob", "x" * MAX_PART])
def test_safe_key_keeps_short_ascii(value: str | bytes) -> None:
    text = value.decode() if isinstance(value, bytes) else value
    assert safe_key("p:", value) == "p:" + text


def test_by_ip_prefixes_and_bounds() -> None:
    assert by_ip()(scope_of("203.0.113.9")) == "ip:203.0.113.9"
    assert by_ip(PROXIES)(scope_of("10.0.0.1", x_forwarded_for="203.0.113.9")) == ("ip:203.0.113.9")
    assert str(by_ip()(scope_of("/var/run/" + "x" * 300))).startswith("ip:~")


@pytest.mark.parametrize(
    ("value", "same_as"),
    [(b"secret-1", b"secret-1"), (b" secret-1 ", b"secret-1"), (b"\xff" * 10_000, None)],
)
def test_api_key_is_hashed_never_the_secret(value: bytes, same_as: bytes | None) -> None:
    key = by_api_key()(scope_of(x_api_key=value))
    assert key is not None
    assert key.startswith("key:")
    assert len(key) == 4 + 32
    assert b"secret" not in key.encode()
    if same_as is not None:
        assert key == by_api_key()(scope_of(x_api_key=same_as))


def test_api_key_absent_or_custom_header() -> None:
    assert by_api_key()(scope_of()) is None
    assert by_api_key()(scope_of(x_api_key="  ")) is None
    assert by_api_key("Authorization")(scope_of(authorization="Bearer t")) is not None
    with pytest.raises(ConfigurationError):
        by_api_key(" ")


def test_subject_keys() -> None:
    scope = scope_of("203.0.113.9")
    assert by_subject()(scope) is None
    assert by_subject_or_ip()(scope) == "ip:203.0.113.9"
    set_principal(scope, Principal("user-1", tier="premium"))
    assert by_subject()(scope) == "sub:user-1"
    assert by_subject_or_ip()(scope) == "sub:user-1"
    set_principal(scope, Principal("J\u00f6rg"))
    assert by_subject()(scope) == safe_key("sub:", "J\u00f6rg")


def test_route_key_from_scope_route_or_path() -> None:
    scope = scope_of()
    assert by_route()(scope) == "route:GET /items/7"
    scope["route"] = Route("/items/{id}", PlainTextResponse)
    assert by_route()(scope) == "route:GET /items/{id}"
    assert by_route(method=False)(scope) == "route:/items/{id}"


async def test_route_key_in_front_of_a_starlette_router() -> None:
    seen: list[str | None] = []
    key = by_route()

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{id:int}", endpoint)])

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["app"] = app  # what Starlette.__call__ sets before its middleware
            seen.append(key(scope))
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/items/42")
        await client.get("/nowhere/" + "x" * 300)
    assert seen[0] == "route:GET /items/{id:int}"
    assert seen[1] is not None
    assert seen[1].startswith("route:~")
