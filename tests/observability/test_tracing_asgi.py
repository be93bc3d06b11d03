"""The whole path: ObservabilityMiddleware -> RateLimitMiddleware -> Starlette -> httpx.

One request from a caller with a ``traceparent`` must come out as one trace: the SERVER
span named after the route, the rate limiter's decision as a span event on it, its stages
as children, and the outgoing call as a CLIENT child carrying the trace on.
"""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sysdesign_kit.observability import (
    AsyncTracingTransport,
    ObservabilityMiddleware,
    RequestTracer,
    TracingSink,
)
from sysdesign_kit.ratelimit import LimitRule, RateLimiter, RateLimitMiddleware, by_ip

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def test_one_request_is_one_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    sent: list[httpx.Request] = []

    def inventory(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"stock": 7})

    upstream = httpx.AsyncClient(
        transport=AsyncTracingTransport(httpx.MockTransport(inventory), tracer_provider=provider)
    )

    async def item(request: Request) -> JSONResponse:
        stock = await upstream.get(f"http://inventory.internal/stock/{request.path_params['id']}")
        if request.path_params["id"] == "0":
            return JSONResponse({"error": "gone"}, status_code=500)
        return JSONResponse(stock.json())

    limiter = RateLimiter("100/minute", name="per-ip", listeners=[TracingSink()])
    app = ObservabilityMiddleware(
        RateLimitMiddleware(
            Starlette(routes=[Route("/items/{id}", item)]),
            limits=[LimitRule(limiter, by_ip())],
        ),
        tracer=RequestTracer(tracer_provider=provider),
        access_log=False,
    )
    async with (
        upstream,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        ok = await client.get("/items/42", headers={"traceparent": TRACEPARENT})
        failed = await client.get("/items/0")
    assert (ok.status_code, failed.status_code) == (200, 500)

    spans = exporter.get_finished_spans()
    servers = [span for span in spans if span.kind is SpanKind.SERVER]
    assert [span.name for span in servers] == ["GET /items/{id}"] * 2
    server = servers[0]
    assert server.context is not None
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    # the limiter's decision (TracingSink), then the stage the middleware timed
    assert [event.name for event in server.events] == [
        "sysdesign_kit.rate_limit.decided",
        "ratelimit",
    ]

    children = [
        span for span in spans if span.parent and span.parent.span_id == server.context.span_id
    ]
    assert [span.name for span in children] == ["GET"]
    (outgoing,) = (span for span in children if span.kind is SpanKind.CLIENT)
    assert outgoing.context is not None
    assert sent[0].headers["traceparent"] == f"00-{TRACE_ID}-{outgoing.context.span_id:016x}-01"

    attributes = servers[1].attributes or {}
    assert (attributes["error.type"], attributes["http.response.status_code"]) == ("500", 500)
    assert servers[1].parent is None  # no traceparent: a root of its own
