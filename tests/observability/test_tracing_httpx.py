"""Outgoing calls: CLIENT spans and W3C propagation through the httpx transports.

``httpx.MockTransport`` is the wire here: it records what would have been sent.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.observability.httpx_tracing import AsyncTracingTransport, TracingTransport
from sysdesign_kit.observability.tracing import RequestTracer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"

Scope = MutableMapping[str, Any]
Handler = Callable[[httpx.Request], httpx.Response]


class Wire:
    """A mock transport's handler that answers ``status`` and keeps what it was sent."""

    def __init__(self, status: int = 200, http_version: bytes | None = b"HTTP/1.1") -> None:
        self.status = status
        self.http_version = http_version
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        extensions = {"http_version": self.http_version} if self.http_version else {}
        return httpx.Response(self.status, extensions=extensions)


def scope_with(*headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "method": "GET", "path": "/", "headers": list(headers)}


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> ReadableSpan:
    (span,) = (span for span in spans if span.kind is kind)
    return span


def test_outgoing_call_carries_the_request_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    wire = Wire()
    tracer = RequestTracer(tracer_provider=provider)
    transport = TracingTransport(httpx.MockTransport(wire), tracer_provider=provider)
    handle = tracer.start(scope_with((b"traceparent", TRACEPARENT.encode())))
    with httpx.Client(transport=transport) as client:
        client.get("http://inventory.internal/stock/7")
    tracer.finish(handle, method="GET", route="/", status=200, error_type=None, stages=())
    spans = exporter.get_finished_spans()
    server, outgoing = by_kind(spans, SpanKind.SERVER), by_kind(spans, SpanKind.CLIENT)
    assert server.context is not None
    assert outgoing.context is not None
    assert outgoing.parent is not None
    assert outgoing.parent.span_id == server.context.span_id
    version, trace_id, parent_id, flags = wire.sent[0].headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent_id == f"{outgoing.context.span_id:016x}"


async def test_async_call_from_inside_an_asgi_app(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    wire = Wire()
    upstream = httpx.AsyncClient(
        transport=AsyncTracingTransport(httpx.MockTransport(wire), tracer_provider=provider)
    )
    tracer = RequestTracer(tracer_provider=provider)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await upstream.get("http://inventory.internal/stock/7")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def traced(scope: Scope, receive: Any, send: Any) -> None:
        # What ObservabilityMiddleware does around the app, in the request's own task.
        handle = tracer.start(scope)
        await app(scope, receive, send)
        tracer.finish(handle, method="GET", route="/orders", status=204, error_type=None, stages=())

    async with (
        upstream,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=traced), base_url="http://api.test"
        ) as client,
    ):
        response = await client.get("/orders", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 204
    assert wire.sent[0].headers["traceparent"].split("-")[1] == TRACE_ID
    outgoing = by_kind(exporter.get_finished_spans(), SpanKind.CLIENT)
    assert outgoing.context is not None
    assert f"{outgoing.context.trace_id:032x}" == TRACE_ID


@pytest.mark.parametrize(
    ("url", "status", "attributes", "error"),
    [
        (
            "https://user:pw@api.example.com:8443/v1/items?q=1&sig=abc",
            200,
            {
                "url.full": "https://REDACTED:REDACTED@api.example.com:8443/v1/items?q=1&sig=REDACTED",
                "server.address": "api.example.com",
                "server.port": 8443,
                "http.response.status_code": 200,
            },
            None,
        ),
        (
            "http://inventory.internal/stock",
            404,  # for a client, a 4xx is a failure
            {"url.full": "http://inventory.internal/stock", "server.port": 80},
            "404",
        ),
        ("https://api.example.com/", 503, {"server.port": 443}, "503"),
        (
            "http://[::1]:8080/p%20q?token=t&b=1#top",
            200,
            {
                "url.full": "http://[::1]:8080/p%20q?token=REDACTED&b=1#top",
                "server.address": "::1",
                "server.port": 8080,
            },
            None,
        ),
    ],
)
def test_client_span_attributes_and_status(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    url: str,
    status: int,
    attributes: dict[str, object],
    error: str | None,
) -> None:
    transport = TracingTransport(httpx.MockTransport(Wire(status)), tracer_provider=provider)
    with httpx.Client(transport=transport) as client:
        client.get(url)
    (span,) = exporter.get_finished_spans()
    recorded = dict(span.attributes or {})
    assert span.name == "GET"
    assert span.kind is SpanKind.CLIENT
    assert recorded["http.request.method"] == "GET"
    assert recorded["network.protocol.version"] == "1.1"
    assert {key: recorded.get(key) for key in attributes} == attributes
    assert recorded.get("error.type") == error
    assert span.status.status_code is (StatusCode.ERROR if error else StatusCode.UNSET)


@pytest.mark.parametrize(("version", "expected"), [(b"HTTP/2", "2"), (None, None)])
def test_protocol_version_only_when_known(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    version: bytes | None,
    expected: str | None,
) -> None:
    wire = Wire(http_version=version)
    transport = TracingTransport(httpx.MockTransport(wire), tracer_provider=provider)
    with httpx.Client(transport=transport) as client:
        client.request("PURGE", "http://cache.internal/")
    (span,) = exporter.get_finished_spans()
    recorded = span.attributes or {}
    assert span.name == "HTTP"
    assert recorded["http.request.method"] == "_OTHER"
    assert recorded["http.request.method_original"] == "PURGE"
    assert recorded.get("network.protocol.version") == expected


async def test_a_failed_call_records_the_error_and_raises_it(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = AsyncTracingTransport(httpx.MockTransport(refuse), tracer_provider=provider)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://down.internal/")
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["error.type"] == "httpx.ConnectError"
    assert "http.response.status_code" not in (span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


@pytest.mark.parametrize(
    ("incoming", "expected"),
    [((b"traceparent", TRACEPARENT.encode()), TRACEPARENT), (None, None)],
)
def test_without_an_sdk_the_incoming_context_is_passed_on(
    incoming: tuple[bytes, bytes] | None, expected: str | None
) -> None:
    no_sdk = NoOpTracerProvider()
    wire = Wire()
    tracer = RequestTracer(tracer_provider=no_sdk)
    transport = TracingTransport(httpx.MockTransport(wire), tracer_provider=no_sdk)
    handle = tracer.start(scope_with(*([incoming] if incoming else [])))
    with httpx.Client(transport=transport) as client:
        client.get("http://inventory.internal/")
    tracer.finish(handle, method="GET", route="/", status=200, error_type=None, stages=())
    assert wire.sent[0].headers.get("traceparent") == expected
    assert trace.get_current_span() is trace.INVALID_SPAN


class _Closing(httpx.BaseTransport, httpx.AsyncBaseTransport):
    closed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.closed += 1


async def test_closing_reaches_the_wrapped_transport() -> None:
    inner = _Closing()
    with httpx.Client(transport=TracingTransport(inner, tracer_provider=NoOpTracerProvider())):
        pass
    async with httpx.AsyncClient(
        transport=AsyncTracingTransport(inner, tracer_provider=NoOpTracerProvider())
    ):
        pass
    assert inner.closed == 2


def test_a_transport_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="sync httpx transport"):
        TracingTransport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="async httpx transport"):
        AsyncTracingTransport(httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not the string"):
        TracingTransport(sensitive_query_params="sig")
