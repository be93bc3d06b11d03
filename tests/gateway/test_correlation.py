"""CorrelationIdMiddleware: accept or mint, echo, expose to logs, forward upstream."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import Message, Receive, Scope, Send
from sysdesign_kit.gateway.correlation import CorrelationIdMiddleware
from sysdesign_kit.observability import ObservabilityMiddleware
from sysdesign_kit.observability.request_id import (
    REQUEST_ID_SCOPE_KEY,
    get_request_id,
    parse_request_id,
)


class Upstream:
    """Records what the app saw: the scope's id, the context variable and the headers."""

    def __init__(self, response_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.seen: list[tuple[Any, str | None, list[tuple[bytes, bytes]]]] = []
        self.response_headers = response_headers or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append((scope.get(REQUEST_ID_SCOPE_KEY), get_request_id(), scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": self.response_headers})
        await send({"type": "http.response.body", "body": b""})


async def call(app: Any, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    await app({"type": "http", "method": "GET", "path": "/", "headers": headers}, receive, send)
    return list(sent[0]["headers"])


def ids(headers: list[tuple[bytes, bytes]], name: bytes = b"x-request-id") -> list[bytes]:
    return [v for k, v in headers if k == name]


async def test_a_well_formed_id_is_kept_echoed_and_exposed() -> None:
    upstream = Upstream()
    response = await call(CorrelationIdMiddleware(upstream), [(b"x-request-id", b"abc-123")])
    assert ids(response) == [b"abc-123"]
    scope_id, context_id, headers = upstream.seen[0]
    assert scope_id == context_id == "abc-123"
    assert ids(headers) == [b"abc-123"]
    assert get_request_id() is None  # reset after the request


@pytest.mark.parametrize(
    "sent",
    [
        [],
        [(b"x-request-id", b"")],
        [(b"x-request-id", b"bad id\r\nx-evil: 1")],
        [(b"x-request-id", b"x" * 129)],
        [(b"x-request-id", "café".encode())],
        [(b"x-request-id", b"<script>")],
    ],
)
async def test_a_missing_or_malformed_id_is_replaced_everywhere(
    sent: list[tuple[bytes, bytes]],
) -> None:
    upstream = Upstream()
    response = await call(CorrelationIdMiddleware(upstream), [(b"accept", b"*/*"), *sent])
    (echoed,) = ids(response)
    scope_id, context_id, headers = upstream.seen[0]
    assert parse_request_id(echoed) == scope_id == context_id
    assert ids(headers) == [echoed]  # forwarded: the chosen id, once
    assert (b"accept", b"*/*") in headers


async def test_the_first_of_several_ids_wins_and_is_forwarded_once() -> None:
    upstream = Upstream()
    sent = [(b"x-request-id", b"first"), (b"x-request-id", b"second")]
    assert ids(await call(CorrelationIdMiddleware(upstream), sent)) == [b"first"]
    assert ids(upstream.seen[0][2]) == [b"first"]


async def test_untrusted_incoming_ids_are_replaced() -> None:
    upstream = Upstream()
    app = CorrelationIdMiddleware(upstream, trust_incoming=False)
    (echoed,) = ids(await call(app, [(b"x-request-id", b"abc")]))
    assert echoed != b"abc"
    assert ids(upstream.seen[0][2]) == [echoed]


async def test_options_header_length_echo_forward() -> None:
    upstream = Upstream()
    app = CorrelationIdMiddleware(
        upstream, header="X-Correlation-ID", max_length=4, echo=False, forward=False
    )
    response = await call(app, [(b"x-correlation-id", b"abcde")])
    assert response == []
    scope_id, _, headers = upstream.seen[0]
    assert scope_id != "abcde"
    assert headers == [(b"x-correlation-id", b"abcde")]


async def test_an_id_the_app_set_itself_is_not_doubled() -> None:
    upstream = Upstream([(b"X-Request-ID", b"app-chosen")])
    response = await call(CorrelationIdMiddleware(upstream), [])
    assert response == [(b"X-Request-ID", b"app-chosen")]


async def test_under_observability_the_id_is_reused_and_echoed_once() -> None:
    upstream = Upstream()
    app = ObservabilityMiddleware(CorrelationIdMiddleware(upstream), access_log=False)
    response = await call(app, [(b"x-request-id", b"bad id")])
    (echoed,) = ids(response)
    scope_id, context_id, headers = upstream.seen[0]
    assert echoed.decode() == scope_id == context_id
    assert ids(headers) == [echoed]


async def test_websockets_get_an_id_and_lifespan_passes() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        pass

    middleware = CorrelationIdMiddleware(app)
    await middleware({"type": "websocket", "headers": []}, receive, send)
    await middleware({"type": "lifespan"}, receive, send)
    assert parse_request_id(seen[0][REQUEST_ID_SCOPE_KEY].encode())
    assert REQUEST_ID_SCOPE_KEY not in seen[1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"header": "x request id"}, "not a valid HTTP header"),
        ({"header": ""}, "not a valid HTTP header"),
        ({"max_length": 0}, "between 1 and 128"),
        ({"max_length": 129}, "between 1 and 128"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CorrelationIdMiddleware(Upstream(), **kwargs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=3))
async def test_any_incoming_value_yields_one_safe_id(values: list[bytes]) -> None:
    upstream = Upstream()
    response = await call(
        CorrelationIdMiddleware(upstream), [(b"x-request-id", value) for value in values]
    )
    (echoed,) = ids(response)
    assert parse_request_id(echoed) is not None
    assert ids(upstream.seen[0][2]) == [echoed]
