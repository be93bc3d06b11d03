"""Outgoing W3C trace propagation for httpx, with a CLIENT span per request sent.

Wrap a client's transport, sync or async::

    client = httpx.AsyncClient(transport=AsyncTracingTransport())
    client = httpx.Client(transport=TracingTransport(httpx.HTTPTransport(retries=1)))

Every request then gets a CLIENT span, a child of whatever span is current (the request
span `RequestTracer` opened, inside a traced request), and carries that span's
``traceparent`` / ``tracestate`` (through the global propagator) to the next service. With
no SDK installed the span does not record, and the incoming trace context is passed on
unchanged.

Attributes follow the HTTP client semantic conventions: ``http.request.method`` (and
``_OTHER`` / ``http.request.method_original``), ``server.address``, ``server.port``,
``url.full`` (user info and sensitive query values replaced by ``REDACTED``),
``http.response.status_code``, ``network.protocol.version`` when the transport reports it,
and ``error.type``: the status code for a 4xx or 5xx answer, the exception's class
(``httpx.ConnectError``) when no answer came. The span ends when the response headers
are in, not when the body has been read: a body the caller never reads must not leave the
span open.

Put the tracing transport innermost (around the transport that does the I/O), beneath
any retrying transport, so that every attempt on the wire has its own span, as the
conventions ask.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Setter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.observability._semconv import (
    REDACTED,
    error_type_of,
    known_methods,
    method_attributes,
    redact_query,
    sensitive_names,
)
from sysdesign_kit.observability.tracing import _Tracer

__all__ = ["AsyncTracingTransport", "TracingTransport"]


class _HeaderSetter(Setter[httpx.Headers]):
    def set(self, carrier: httpx.Headers, key: str, value: str) -> None:
        carrier[key] = value


_SETTER = _HeaderSetter()


class _ClientSpans:
    """The part both transports share: open the span and inject it, then close it."""

    __slots__ = ("_known", "_sensitive", "_tracer")

    def __init__(
        self, tracer_provider: trace.TracerProvider | None, sensitive: Iterable[str]
    ) -> None:
        self._tracer = _Tracer("sysdesign_kit.observability.httpx", tracer_provider)
        self._known = known_methods()
        self._sensitive = sensitive_names(sensitive)

    def open(self, request: httpx.Request) -> trace.Span | None:
        if not self._tracer.may_record():
            # No SDK: pass on whatever trace context is current (an incoming request's).
            propagate.inject(request.headers, setter=_SETTER)
            return None
        name, method_attrs = method_attributes(request.method, self._known)
        url = request.url
        attrs: dict[str, AttributeValue] = dict(method_attrs)
        attrs["server.address"] = url.host
        attrs["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        attrs["url.full"] = self._full_url(url)
        span = self._tracer.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        propagate.inject(request.headers, trace.set_span_in_context(span), _SETTER)
        return span

    def _full_url(self, url: httpx.URL) -> str:
        # Assembled from the parsed parts: re-parsing through URL.copy_with costs more
        # than the rest of the span.
        userinfo = f"{REDACTED}:{REDACTED}@" if url.userinfo else ""
        path, sep, query = url.raw_path.decode("ascii").partition("?")
        if query:
            query = redact_query(query, self._sensitive)
        fragment = f"#{url.fragment}" if url.fragment else ""
        netloc = url.netloc.decode("ascii")
        return f"{url.scheme}://{userinfo}{netloc}{path}{sep}{query}{fragment}"

    @staticmethod
    def answered(span: trace.Span | None, response: httpx.Response) -> None:
        if span is None:
            return
        if span.is_recording():
            status = response.status_code
            span.set_attribute("http.response.status_code", status)
            version = response.extensions.get("http_version")
            if isinstance(version, bytes) and version.startswith(b"HTTP/"):
                span.set_attribute("network.protocol.version", version[5:].decode("ascii"))
            if status >= 400:  # for a client, a 4xx is a failure too
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        span.end()

    @staticmethod
    def failed(span: trace.Span | None, exc: BaseException) -> None:
        if span is None:
            return
        if span.is_recording():
            span.set_attribute("error.type", error_type_of(exc))
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class TracingTransport(httpx.BaseTransport):
    """A sync httpx transport that traces and propagates every request it sends.

    Args:
        transport: the transport doing the I/O; a default `httpx.HTTPTransport` if omitted.
        tracer_provider: where spans go; the global provider when omitted.
        sensitive_query_params: more query parameters (any case, besides the built-in
            credential names) whose values are redacted from ``url.full``.

    Raises:
        ConfigurationError: a transport of the wrong kind, a ``tracer_provider`` that is
            not one, or ``sensitive_query_params`` that are not names.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        sensitive_query_params: Iterable[str] = (),
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ConfigurationError(f"transport must be a sync httpx transport, got {transport!r}")
        self._spans = _ClientSpans(tracer_provider, sensitive_query_params)
        self.transport = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped transport inside a CLIENT span."""
        span = self._spans.open(request)
        try:
            response = self.transport.handle_request(request)
        except BaseException as exc:
            self._spans.failed(span, exc)
            raise
        self._spans.answered(span, response)
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self.transport.close()


class AsyncTracingTransport(httpx.AsyncBaseTransport):
    """An async httpx transport that traces and propagates every request it sends.

    Args:
        transport: the transport doing the I/O; a default `httpx.AsyncHTTPTransport` if
            omitted.
        tracer_provider: where spans go; the global provider when omitted.
        sensitive_query_params: more query parameters (any case, besides the built-in
            credential names) whose values are redacted from ``url.full``.

    Raises:
        ConfigurationError: a transport of the wrong kind, a ``tracer_provider`` that is
            not one, or ``sensitive_query_params`` that are not names.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        sensitive_query_params: Iterable[str] = (),
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError(
                f"transport must be an async httpx transport, got {transport!r}"
            )
        self._spans = _ClientSpans(tracer_provider, sensitive_query_params)
        self.transport = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped transport inside a CLIENT span."""
        span = self._spans.open(request)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:
            self._spans.failed(span, exc)
            raise
        self._spans.answered(span, response)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.transport.aclose()
