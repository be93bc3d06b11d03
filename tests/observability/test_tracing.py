"""RequestTracer: the SERVER span of a request, per the HTTP semantic conventions.

Spans are captured by the SDK's in-memory exporter on a provider passed explicitly: the
global tracer provider is never touched.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Getter, Setter, TextMapPropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, SamplingResult
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.observability._semconv import host_port
from sysdesign_kit.observability.tracing import RequestTracer
from sysdesign_kit.ratelimit import ClientIP

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def http_scope(
    *,
    method: str = "GET",
    path: str = "/items/42",
    query: bytes = b"",
    headers: Sequence[tuple[str, str]] = (("host", "api.example.com"),),
    scheme: str = "http",
    client: tuple[str, int] | None = ("203.0.113.7", 51234),
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(name.encode(), value.encode("latin-1")) for name, value in headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


def serve(
    tracer: RequestTracer,
    scope: dict[str, Any],
    *,
    route: str = "/items/{id}",
    status: int = 200,
    error_type: str | None = None,
    stages: Sequence[tuple[str, float]] = (),
) -> None:
    handle = tracer.start(scope)
    tracer.finish(
        handle,
        method=scope["method"],
        route=route,
        status=status,
        error_type=error_type,
        stages=stages,
    )


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def test_span_name_kind_and_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    scope = http_scope(
        method="POST",
        query=b"page=2",
        headers=[("host", "api.example.com:8443"), ("user-agent", "probe/1.0")],
        scheme="https",
    )
    scope["http_version"] = "2"
    serve(RequestTracer(tracer_provider=provider), scope, status=201)
    span = only_span(exporter)
    assert span.name == "POST /items/{id}"
    assert span.kind is SpanKind.SERVER
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "sysdesign_kit.observability"
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/items/{id}",
        "http.response.status_code": 201,
        "url.scheme": "https",
        "url.path": "/items/42",
        "url.query": "page=2",
        "server.address": "api.example.com",
        "server.port": 8443,
        "client.address": "203.0.113.7",
        "user_agent.original": "probe/1.0",
        "network.protocol.version": "2",
    }


@pytest.mark.parametrize(
    ("status", "error_type", "expected_status", "expected_error"),
    [
        (200, None, StatusCode.UNSET, None),
        (302, None, StatusCode.UNSET, None),
        (404, None, StatusCode.UNSET, None),
        (404, "404", StatusCode.UNSET, None),  # a 4xx is the client's failure, not ours
        (429, "429", StatusCode.UNSET, None),
        (500, None, StatusCode.ERROR, "500"),
        (503, "503", StatusCode.ERROR, "503"),
        (500, "ValueError", StatusCode.ERROR, "ValueError"),
        (200, "ClientDisconnect", StatusCode.ERROR, "ClientDisconnect"),  # failed after 200
        (0, "ValueError", StatusCode.ERROR, "ValueError"),  # no response at all
        (0, None, StatusCode.ERROR, "_OTHER"),
    ],
)
def test_only_server_failures_are_errors(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    status: int,
    error_type: str | None,
    expected_status: StatusCode,
    expected_error: str | None,
) -> None:
    serve(
        RequestTracer(tracer_provider=provider),
        http_scope(),
        status=status,
        error_type=error_type,
    )
    span = only_span(exporter)
    attributes = span.attributes or {}
    assert span.status.status_code is expected_status
    assert attributes.get("error.type") == expected_error
    assert attributes.get("http.response.status_code") == (status or None)


@pytest.mark.parametrize(
    ("method", "route", "name", "attributes"),
    [
        ("GET", "/items/{id}", "GET /items/{id}", {"http.request.method": "GET"}),
        ("DELETE", "", "DELETE", {"http.request.method": "DELETE"}),  # no route matched
        (
            "get",  # methods are case-sensitive
            "/items/{id}",
            "HTTP /items/{id}",
            {"http.request.method": "_OTHER", "http.request.method_original": "get"},
        ),
        (
            "PURGE",
            "",
            "HTTP",
            {"http.request.method": "_OTHER", "http.request.method_original": "PURGE"},
        ),
    ],
)
def test_span_name_and_method_normalisation(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    method: str,
    route: str,
    name: str,
    attributes: dict[str, str],
) -> None:
    serve(RequestTracer(tracer_provider=provider), http_scope(method=method), route=route)
    span = only_span(exporter)
    assert span.name == name
    recorded = span.attributes or {}
    assert {key: recorded.get(key) for key in attributes} == attributes
    assert ("http.request.method_original" in recorded) == ("_OTHER" in attributes.values())
    assert ("http.route" in recorded) == bool(route)


def test_known_methods_can_be_overridden(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET, PURGE")
    tracer = RequestTracer(tracer_provider=provider)
    serve(tracer, http_scope(method="PURGE"), route="/cache")
    serve(tracer, http_scope(method="POST"), route="/cache")
    purge, post = exporter.get_finished_spans()
    assert (purge.name, (purge.attributes or {})["http.request.method"]) == (
        "PURGE /cache",
        "PURGE",
    )
    assert (post.name, (post.attributes or {})["http.request.method"]) == ("HTTP /cache", "_OTHER")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", None),
        (b"q=shoes&page=2", "q=shoes&page=2"),
        (b"q=1&sig=abc&API_KEY=k&token", "q=1&sig=REDACTED&API_KEY=REDACTED&token"),
        (b"access_token=eyJhbGciOi&x=", "access_token=REDACTED&x="),
        (b"X-Goog-Signature=ff&Signature=aa", "X-Goog-Signature=REDACTED&Signature=REDACTED"),
        # the same rule as the access log: credential-like words, names as the server reads them
        (b"reset_token=t&db_password=p", "reset_token=REDACTED&db_password=REDACTED"),
        (
            b"X-Amz-Credential=c&X-Amz-Security-Token=s",
            "X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED",
        ),
        (b"api%5Fkey=k&api+key=k2", "api%5Fkey=REDACTED&api+key=k2"),
    ],
)
def test_sensitive_query_values_are_redacted(
    provider: TracerProvider, exporter: InMemorySpanExporter, query: bytes, expected: str | None
) -> None:
    serve(RequestTracer(tracer_provider=provider), http_scope(query=query))
    assert (only_span(exporter).attributes or {}).get("url.query") == expected


def test_more_sensitive_names_add_to_the_built_in_ones(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = RequestTracer(tracer_provider=provider, sensitive_query_params=["Account"])
    serve(tracer, http_scope(query=b"account=1&token=t&q=x"))
    assert (only_span(exporter).attributes or {})["url.query"] == (
        "account=REDACTED&token=REDACTED&q=x"
    )


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("example.com", "http", ("example.com", 80)),
        ("example.com", "https", ("example.com", 443)),
        ("example.com:8080", "http", ("example.com", 8080)),
        ("[::1]:8443", "https", ("::1", 8443)),
        ("[::1]", "https", ("::1", 443)),
        ("10.0.0.1:99999", "http", ("10.0.0.1", 80)),  # out of range
        ("example.com:abc", "http", ("example.com", 80)),
        ("example.com:\u00b2", "http", ("example.com", 80)),  # a digit, but not ASCII
        ("[::1", "http", ("[::1", 80)),
    ],
)
def test_host_header_parsing(host: str, scheme: str, expected: tuple[str, int]) -> None:
    assert host_port(host, scheme) == expected


def test_client_address_and_missing_headers(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    forwarded = [("x-forwarded-for", "198.51.100.9")]
    serve(RequestTracer(tracer_provider=provider), http_scope(headers=forwarded, client=None))
    trusting = RequestTracer(
        tracer_provider=provider, client_address=ClientIP(trusted_proxies=["203.0.113.0/24"])
    )
    serve(trusting, http_scope(headers=forwarded))
    bare, proxied = (span.attributes or {} for span in exporter.get_finished_spans())
    # No Host, no peer, no user agent: those attributes are left out, nothing is invented.
    assert not {"server.address", "server.port", "client.address", "user_agent.original"} & set(
        bare
    )
    assert proxied["client.address"] == "198.51.100.9"


def test_incoming_traceparent_is_the_parent(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    headers = [("traceparent", TRACEPARENT), ("tracestate", "congo=t61rcWkgMzE")]
    serve(RequestTracer(tracer_provider=provider), http_scope(headers=headers))
    span = only_span(exporter)
    assert span.context is not None
    assert span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == SPAN_ID
    assert span.parent.is_remote
    assert span.context.trace_state.get("congo") == "t61rcWkgMzE"


GARBAGE = {
    "version ff": f"ff-{TRACE_ID}-{SPAN_ID}-01",
    "version not hex": f"0g-{TRACE_ID}-{SPAN_ID}-01",
    "short trace id": f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
    "long trace id": f"00-{TRACE_ID}a-{SPAN_ID}-01",
    "short span id": f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",
    "long span id": f"00-{TRACE_ID}-{SPAN_ID}0-01",
    "short flags": f"00-{TRACE_ID}-{SPAN_ID}-1",
    "zero trace id": f"00-{'0' * 32}-{SPAN_ID}-01",
    "zero span id": f"00-{TRACE_ID}-{'0' * 16}-01",
    "non-hex trace id": f"00-{'z' * 32}-{SPAN_ID}-01",
    "upper-case hex": f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
    "version 00 with a tail": f"{TRACEPARENT}-extra",
    "wrong separators": TRACEPARENT.replace("-", "_"),
    "empty": "",
    "latin-1 bytes": "\u00ff\u00fe" * 30,
    "10 kB": TRACEPARENT + "0" * 10_000,
    "10 kB of dashes": "-" * 10_000,
}


@pytest.mark.parametrize("traceparent", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_traceparent_starts_a_new_root(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    traceparent: str,
) -> None:
    headers = [("traceparent", traceparent), ("tracestate", "congo=t61rcWkgMzE")]
    with caplog.at_level(logging.WARNING):
        serve(RequestTracer(tracer_provider=provider), http_scope(headers=headers))
    span = only_span(exporter)
    assert span.parent is None
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" != TRACE_ID
    assert not caplog.records  # garbage is routine: not worth a log line per request


def test_two_traceparents_start_a_new_root(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    headers = [("traceparent", TRACEPARENT), ("traceparent", other)]
    serve(RequestTracer(tracer_provider=provider), http_scope(headers=headers))
    assert only_span(exporter).parent is None


@pytest.mark.parametrize("tracestate", ["", "=,=,=", "a=" + "b" * 600, ",".join(["k=v"] * 40)])
def test_garbage_tracestate_keeps_the_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter, tracestate: str
) -> None:
    headers = [("traceparent", TRACEPARENT), ("tracestate", tracestate)]
    serve(RequestTracer(tracer_provider=provider), http_scope(headers=headers))
    span = only_span(exporter)
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == TRACE_ID


def test_span_is_current_while_the_app_runs(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = RequestTracer(tracer_provider=provider)
    handle = tracer.start(http_scope(headers=[("traceparent", TRACEPARENT)]))
    current = trace.get_current_span()
    with provider.get_tracer("app").start_as_current_span("load item"):
        pass
    tracer.finish(handle, method="GET", route="/items/{id}", status=200, error_type=None, stages=())
    assert trace.get_current_span() is trace.INVALID_SPAN  # the previous context is back
    work, server = exporter.get_finished_spans()
    assert current.get_span_context() == server.context
    assert work.parent is not None
    assert server.context is not None
    assert work.parent.span_id == server.context.span_id
    assert work.context is not None
    assert f"{work.context.trace_id:032x}" == TRACE_ID


def test_stages_become_span_events_at_their_ends(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = ManualClock()
    tracer = RequestTracer(tracer_provider=provider, clock=clock)
    handle = tracer.start(http_scope())
    clock.advance(0.010)
    stages = [("waf", 0.001), ("ratelimit", 0.002), ("auth", -1.0), ("late", 5.0), ("app", 0.0)]
    tracer.finish(handle, method="GET", route="/r", status=200, error_type=None, stages=stages)
    server = only_span(exporter)  # no child spans
    assert server.start_time is not None
    assert server.end_time is not None
    found = [
        (event.name, event.timestamp - server.start_time, event.attributes)
        for event in server.events
    ]
    assert found == [  # the final "app" (the remainder) is the span itself: no event
        ("waf", 1_000_000, {"sysdesign_kit.stage.duration": 0.001}),
        ("ratelimit", 3_000_000, {"sysdesign_kit.stage.duration": 0.002}),
        ("auth", 3_000_000, {"sysdesign_kit.stage.duration": 0.0}),
        ("late", 10_000_000, {"sysdesign_kit.stage.duration": 5.0}),  # cut at the end
    ]


def test_stages_become_child_spans_laid_out_from_the_start(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = ManualClock()
    tracer = RequestTracer(tracer_provider=provider, clock=clock, stages="spans")
    handle = tracer.start(http_scope())
    clock.advance(0.010)
    stages = [("waf", 0.001), ("ratelimit", 0.002), ("auth", 0.0), ("app", 0.0065)]
    tracer.finish(handle, method="GET", route="/r", status=200, error_type=None, stages=stages)
    *children, server = exporter.get_finished_spans()
    assert server.context is not None
    assert server.end_time - server.start_time == 10_000_000  # type: ignore[operator]
    assert [child.name for child in children] == ["waf", "ratelimit", "auth", "app"]
    offsets = [
        (child.start_time - server.start_time, child.end_time - server.start_time)  # type: ignore[operator]
        for child in children
    ]
    assert offsets == [
        (0, 1_000_000),
        (1_000_000, 3_000_000),
        (3_000_000,) * 2,
        (3_000_000, 9_500_000),
    ]
    for child in children:
        assert child.kind is SpanKind.INTERNAL
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id


def test_stages_never_outlast_the_request(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = ManualClock()
    tracer = RequestTracer(tracer_provider=provider, clock=clock, stages="spans")
    handle = tracer.start(http_scope())
    clock.advance(0.002)
    stages = [("waf", -1.0), ("app", 0.0015), ("late", 5.0)]
    tracer.finish(handle, method="GET", route="/r", status=200, error_type=None, stages=stages)
    *children, server = exporter.get_finished_spans()
    assert [child.end_time - child.start_time for child in children] == [0, 1_500_000, 500_000]  # type: ignore[operator]
    assert max(child.end_time or 0 for child in children) == server.end_time


def test_stages_can_be_turned_off(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    tracer = RequestTracer(tracer_provider=provider, stages="off")
    serve(tracer, http_scope(), stages=[("waf", 0.0), ("app", 0.0)])
    assert [span.name for span in exporter.get_finished_spans()] == ["GET /items/{id}"]
    assert only_span(exporter).events == ()


class _CountingPropagator(TextMapPropagator):
    """Reads one custom header, and counts how often it is asked to."""

    def __init__(self) -> None:
        self.calls = 0

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] | None = None,
    ) -> Context:
        self.calls += 1
        return context if context is not None else Context()

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] | None = None,
    ) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return {"X-Trace"}


def test_extraction_is_skipped_without_the_propagators_headers(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = RequestTracer(tracer_provider=provider)
    previous = propagate.get_global_textmap()
    counting = _CountingPropagator()
    propagate.set_global_textmap(counting)
    try:
        serve(tracer, http_scope(headers=[("traceparent", TRACEPARENT)]))
        assert counting.calls == 0  # not a header this propagator reads
        serve(tracer, http_scope(headers=[("x-trace", "abc")]))
        assert counting.calls == 1
    finally:
        propagate.set_global_textmap(previous)
    serve(tracer, http_scope(headers=[("traceparent", TRACEPARENT)]))  # learnt anew
    *_, last = exporter.get_finished_spans()
    assert last.parent is not None
    assert f"{last.parent.span_id:016x}" == SPAN_ID


def test_unsampled_request_records_nothing_but_keeps_the_context(
    exporter: InMemorySpanExporter,
) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RequestTracer(tracer_provider=provider)
    handle = tracer.start(http_scope(headers=[("traceparent", TRACEPARENT)]))
    context = trace.get_current_span().get_span_context()
    tracer.finish(handle, method="GET", route="/r", status=500, error_type=None, stages=[("a", 1)])
    assert exporter.get_finished_spans() == ()
    assert f"{context.trace_id:032x}" == TRACE_ID


@pytest.mark.parametrize("incoming", [[], [("traceparent", TRACEPARENT)]])
def test_without_an_sdk_it_is_a_no_op_that_passes_the_context_on(
    incoming: list[tuple[str, str]],
) -> None:
    tracer = RequestTracer(tracer_provider=NoOpTracerProvider())
    handle = tracer.start(http_scope(headers=incoming))
    current = trace.get_current_span()
    tracer.finish(handle, method="GET", route="/r", status=200, error_type=None, stages=())
    assert not current.is_recording()
    assert current.get_span_context().is_valid == bool(incoming)
    assert (handle is None) == (not incoming)  # no trace to pass on: nothing to finish
    assert trace.get_current_span() is trace.INVALID_SPAN


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
def test_only_http_is_traced(
    provider: TracerProvider, exporter: InMemorySpanExporter, scope_type: str
) -> None:
    tracer = RequestTracer(tracer_provider=provider)
    handle = tracer.start({**http_scope(), "type": scope_type})
    assert handle is None
    tracer.finish(handle, method="GET", route="/", status=101, error_type=None, stages=())
    assert exporter.get_finished_spans() == ()


class _BrokenPropagator(TextMapPropagator):
    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] | None = None,
    ) -> Context:
        raise ValueError("cannot parse")

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] | None = None,
    ) -> None:
        raise ValueError("cannot write")

    @property
    def fields(self) -> set[str]:
        return set()


class _BrokenSampler(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        raise RuntimeError("sampler bug")

    def get_description(self) -> str:
        return "broken"


def test_a_broken_propagator_costs_only_the_parent(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(_BrokenPropagator())
    try:
        scope = http_scope(headers=[("traceparent", TRACEPARENT)])
        serve(RequestTracer(tracer_provider=provider), scope)
    finally:
        propagate.set_global_textmap(previous)
    assert only_span(exporter).parent is None


def test_a_broken_sampler_costs_only_the_span(caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider(sampler=_BrokenSampler(), shutdown_on_exit=False)
    tracer = RequestTracer(tracer_provider=provider)
    with caplog.at_level(logging.ERROR, logger="sysdesign_kit.observability"):
        handle = tracer.start(http_scope())
    assert handle is None
    tracer.finish(handle, method="GET", route="/", status=200, error_type=None, stages=())
    assert "could not start the request span" in caplog.text
    assert trace.get_current_span() is trace.INVALID_SPAN


GLOBAL_PROVIDER_SCRIPT = f"""
import sys
import sysdesign_kit.observability as o
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported eagerly"
assert o.TracingSink and o.TracingTransport and o.AsyncTracingTransport

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

tracer = o.RequestTracer()  # the global provider, not set yet
scope = {{"type": "http", "method": "GET", "path": "/", "headers": []}}
assert tracer.start(scope) is None  # nothing to record, nothing to pass on
scope["headers"] = [(b"traceparent", b"{TRACEPARENT}")]
handle = tracer.start(scope)
assert format(trace.get_current_span().get_span_context().trace_id, "032x") == "{TRACE_ID}"
tracer.finish(handle, method="GET", route="/", status=200, error_type=None, stages=())
assert trace.get_current_span() is trace.INVALID_SPAN

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # set late: the same tracer now records
tracer.finish(tracer.start(scope), method="GET", route="/", status=200, error_type=None, stages=())
assert [span.name for span in exporter.get_finished_spans()] == ["GET /"]
"""


def test_global_provider_and_lazy_import() -> None:
    # A fresh interpreter: the global provider can be set only once per process.
    subprocess.run([sys.executable, "-c", GLOBAL_PROVIDER_SCRIPT], check=True, timeout=60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tracer_provider": object()}, "tracer_provider must be an OpenTelemetry"),
        ({"client_address": "10.0.0.1"}, "client_address must be callable"),
        ({"stages": "children"}, "stages must be one of"),
        ({"sensitive_query_params": "token"}, "not the string 'token'"),
        ({"sensitive_query_params": ["token", ""]}, "'' is not a parameter name"),
        ({"sensitive_query_params": [b"token"]}, "b'token' is not a parameter name"),
    ],
)
def test_bad_configuration_is_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RequestTracer(**kwargs)
