"""OpenTelemetry tracing: a SERVER span per request (component events: `tracing_sink`).

Only ``opentelemetry-api`` is used; which SDK (if any) records the spans is the user's
choice, made by passing a ``TracerProvider`` or setting the global one (even after the
tracer was made). With only the API installed no span is made at all; a caller's trace
context is still made current, so outgoing calls carry it on (see `httpx_tracing`), as
the W3C Trace Context recommends.

`RequestTracer` follows the stable HTTP semantic conventions: the span is named
``"{method} {route}"`` (just ``"{method}"`` while, or if, the route template is unknown;
``"HTTP"`` stands for a method it does not know), and only a 5xx, or a failure after the
status was sent, marks it as an error: a 4xx is the client's mistake, not the server's.

The request's edge stages (``waf``, ``ratelimit``, ``auth``, ``cache``, ``upstream``...)
become span events by default: one event per stage, named for it, stamped at the stage's
end and carrying its duration (``sysdesign_kit.stage.duration``, seconds). The final
``app`` entry the middleware appends (the time in the app outside the stages) is the span
itself minus the stages, so it gets no event. With ``stages="spans"`` every stage, ``app``
included, becomes a child span instead: trace viewers draw those on the waterfall, the
seed's per-request timeline, but each costs about as much as the request span itself
(an event costs a third of that). The timeline records durations, not start times, so
stages are laid out back to back from the request span's start, each layer's share one
after the other (which is how the layers record them); the few microseconds between
layers are folded into the next stage, and a stage that would end after the request is
cut at its end. Nothing is made for a span that is not recording.

Incoming context is read with the global propagator (``traceparent``, ``tracestate`` and
``baggage`` by default); a request carrying none of the headers the propagator declares
(its ``fields``) skips extraction and starts a new trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from contextvars import Token
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from sysdesign_kit import __version__
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.observability._semconv import (
    DEFAULT_SENSITIVE_QUERY_PARAMS,
    host_port,
    known_methods,
    method_attributes,
    redact_query,
    sensitive_names,
)

__all__ = ["DEFAULT_SENSITIVE_QUERY_PARAMS", "RequestTracer"]

Scope = MutableMapping[str, Any]
Headers = Sequence[tuple[bytes, bytes]]

_log = logging.getLogger("sysdesign_kit.observability")

#: A version-00 traceparent is 55 characters; the W3C parsers stop at 512.
_TRACEPARENT_MAX = 512
_INSTRUMENTATION = "sysdesign_kit.observability"


class _AsgiHeaderGetter(Getter[Headers]):
    """Reads propagation headers straight from ASGI's ``[(name, value), ...]`` list."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[str, bytes] = {}  # a propagator asks for the same few keys

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        name = self._names.get(key)
        if name is None:
            name = key.lower().encode("latin-1")
            if len(self._names) < 64:
                self._names[key] = name
        values: list[str] | None = None
        for header, value in carrier:
            if header == name:
                if values is None:
                    values = [value.decode("latin-1")]
                else:
                    values.append(value.decode("latin-1"))
        if values is None:
            return None
        if name == b"traceparent" and (len(values) > 1 or len(values[0]) > _TRACEPARENT_MAX):
            # Two traceparents are ambiguous and an oversized one is garbage: both start a
            # new trace (W3C), and dropping them here spares the propagator's warning log.
            return None
        return values

    def keys(self, carrier: Headers) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_GETTER = _AsgiHeaderGetter()
_NO_PARENT = otel_context.Context()  # extraction's answer when no header carries context
Stages = Literal["events", "spans", "off"]
_STAGE_MODES = ("events", "spans", "off")
_STAGE_DURATION = "sysdesign_kit.stage.duration"


class _Extractor:
    """The global propagator's ``extract``, skipped when no header it reads is present."""

    __slots__ = ("_names", "_propagator")

    def __init__(self) -> None:
        self._propagator: object = None
        self._names: frozenset[bytes] | None = None

    def __call__(self, headers: Headers) -> otel_context.Context | None:
        propagator = propagate.get_global_textmap()
        if propagator is not self._propagator:
            # The global propagator can be replaced at any time: learn its headers anew.
            try:
                fields = {name.lower().encode("latin-1") for name in propagator.fields}
            except Exception:
                fields = set()
            # A propagator declaring no fields might still read some: always ask it.
            self._names = frozenset(fields) or None
            self._propagator = propagator
        names = self._names
        if names is not None:
            for header, _ in headers:
                if header in names:
                    break
            else:
                return _NO_PARENT
        try:
            return propagator.extract(headers, getter=_GETTER)
        except Exception:
            # A third-party propagator choking on garbage must not fail the request.
            return None


class _Tracer:
    """A tracer, and a cheap per-request answer to "could a span record at all?"."""

    __slots__ = ("_global", "_noop", "_ready", "tracer")

    def __init__(self, name: str, provider: trace.TracerProvider | None) -> None:
        if provider is not None and not isinstance(provider, trace.TracerProvider):
            raise ConfigurationError(
                f"tracer_provider must be an OpenTelemetry TracerProvider, got {provider!r}"
            )
        self.tracer = trace.get_tracer(name, __version__, tracer_provider=provider)
        self._noop = isinstance(self.tracer, trace.NoOpTracer)
        self._global = provider is None
        self._ready = not self._global

    def may_record(self) -> bool:
        """False when only the API is there: spans would be no-ops, so skip making them."""
        if self._noop:
            return False
        if not self._ready:
            # The global provider can be set at any time (once); until it is, the API's
            # proxy only hands out non-recording spans.
            self._ready = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        return self._ready


class _RequestSpan:
    __slots__ = ("mono_ns", "span", "start_ns", "token")

    def __init__(
        self, span: trace.Span, token: Token[otel_context.Context], start_ns: int, mono_ns: int
    ) -> None:
        self.span = span
        self.token = token
        self.start_ns = start_ns  # wall clock, for the span's timestamps
        self.mono_ns = mono_ns  # monotonic, for its duration: the wall clock may jump


class RequestTracer:
    """Opens a SERVER span per HTTP request and makes it current while the app runs.

    `ObservabilityMiddleware` calls `start` when a request arrives and `finish` when it is
    done, both in the request's own task. Neither ever raises into the request: a broken
    propagator, sampler or header only costs the trace.

    The span carries ``http.request.method`` (``_OTHER`` plus ``http.request.method_original``
    for an unknown method), ``url.path``, ``url.scheme``, ``url.query`` (sensitive values
    replaced by ``REDACTED``), ``server.address`` / ``server.port`` (from ``Host``),
    ``client.address``, ``user_agent.original`` and ``network.protocol.version`` from the
    start, so samplers see them; ``http.route``, ``http.response.status_code`` and
    ``error.type`` are added at the end.

    Args:
        tracer_provider: where spans go; the global provider when omitted.
        client_address: how to find the client's address, e.g. a
            `sysdesign_kit.ratelimit.ClientIP` that trusts your proxies. By default the
            ASGI server's peer address, which the server itself rewrites from forwarding
            headers when it is configured to trust them.
        sensitive_query_params: more query parameters (any case) whose values are redacted,
            besides `DEFAULT_SENSITIVE_QUERY_PARAMS` and credential-like names.
        stages: how the request's stages are recorded: ``"events"`` (span events for
            the edge stages), ``"spans"`` (a child span per stage, ``app`` included) or
            ``"off"`` (left to ``Server-Timing`` and the metrics).
        clock: the clock timestamps are read from (a `ManualClock` in tests).

    Raises:
        ConfigurationError: a ``tracer_provider`` that is not one, a ``client_address``
            that is not callable, or ``sensitive_query_params`` that are not names.
    """

    __slots__ = (
        "_client_address",
        "_clock",
        "_extract",
        "_known",
        "_methods",
        "_sensitive",
        "_stages_mode",
        "_tracer",
    )

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        client_address: Callable[[Scope], str] | None = None,
        sensitive_query_params: Iterable[str] = (),
        stages: Stages = "events",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if stages not in _STAGE_MODES:
            raise ConfigurationError(f"stages must be one of {_STAGE_MODES}, got {stages!r}")
        self._clock = clock
        self._tracer = _Tracer(_INSTRUMENTATION, tracer_provider)
        self._stages_mode = stages
        self._extract = _Extractor()
        if client_address is not None and not callable(client_address):
            raise ConfigurationError(f"client_address must be callable, got {client_address!r}")
        self._client_address = client_address
        self._sensitive = sensitive_names(sensitive_query_params)
        self._known = known_methods()
        # The known methods' name and attributes, made once: most requests take this path.
        self._methods = {method: method_attributes(method, self._known) for method in self._known}

    def start(self, scope: Scope) -> object | None:
        """Open the request's span and make it the current span.

        Args:
            scope: the ASGI scope; anything but ``"http"`` is not traced.

        Returns:
            A handle for `finish`, or ``None`` when there is nothing to finish.
        """
        if scope.get("type") != "http":
            return None
        try:
            return self._start(scope)
        except Exception:
            _log.exception("could not start the request span")
            return None

    def _start(self, scope: Scope) -> _RequestSpan | None:
        headers: Headers = scope.get("headers") or ()
        parent = self._extract(headers)
        if not self._tracer.may_record():
            # No SDK: no span to make. An incoming trace context is still made current,
            # so that outgoing calls pass it on unchanged.
            if parent is None or parent is _NO_PARENT:
                return None
            incoming = trace.get_current_span(parent)
            if not incoming.get_span_context().is_valid:
                return None
            return _RequestSpan(incoming, otel_context.attach(parent), 0, 0)
        start_ns = int(self._clock.time() * 1e9)
        mono_ns = self._clock.monotonic_ns()
        method = scope.get("method", "GET")
        name, attributes = self._methods.get(method) or method_attributes(method, self._known)
        attrs: dict[str, AttributeValue] = dict(attributes)
        scheme = scope.get("scheme") or "http"
        attrs["url.scheme"] = scheme
        attrs["url.path"] = scope.get("path", "")
        query = scope.get("query_string")
        if query:
            attrs["url.query"] = redact_query(query.decode("latin-1"), self._sensitive)
        version = scope.get("http_version")
        if version:
            attrs["network.protocol.version"] = version
        for header, value in headers:
            if header == b"host":
                address, port = host_port(value.decode("latin-1"), scheme)
                if address:
                    attrs["server.address"] = address
                    attrs["server.port"] = port
            elif header == b"user-agent":
                attrs["user_agent.original"] = value.decode("latin-1")
        client = self._client_address_of(scope)
        if client:
            attrs["client.address"] = client
        span = self._tracer.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attrs, start_time=start_ns
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return _RequestSpan(span, token, start_ns, mono_ns)

    def _client_address_of(self, scope: Scope) -> str | None:
        if self._client_address is not None:
            found = self._client_address(scope)
            return found if found and found != "unknown" else None
        peer = scope.get("client")
        return str(peer[0]) if peer else None

    def finish(
        self,
        handle: object | None,
        *,
        method: str,
        route: str,
        status: int,
        error_type: str | None,
        stages: Sequence[tuple[str, float]],
    ) -> None:
        """Name, annotate and end the request's span, and restore the previous context.

        Args:
            handle: what `start` returned (``None`` is accepted and ignored).
            method: the request method.
            route: the route template; ``""`` when no route matched.
            status: the response status; ``0`` if none was sent.
            error_type: the failure's low-cardinality class (an exception's class name,
                or the status code), ``None`` when the request succeeded.
            stages: the request's timeline, ``(stage, seconds)`` in the order they ran.
        """
        if type(handle) is not _RequestSpan:
            return
        try:
            span = handle.span
            if span.is_recording():
                end_ns = handle.start_ns + self._clock.monotonic_ns() - handle.mono_ns
                self._annotate(span, method, route, status, error_type)
                self._stages(span, handle.start_ns, end_ns, stages)
                span.end(end_time=end_ns)
        except Exception:
            _log.exception("could not finish the request span")
        finally:
            otel_context.detach(handle.token)

    def _annotate(
        self, span: trace.Span, method: str, route: str, status: int, error_type: str | None
    ) -> None:
        attrs: dict[str, AttributeValue] = {}
        if route:
            span.update_name(f"{method if method in self._known else 'HTTP'} {route}")
            attrs["http.route"] = route
        if status > 0:
            attrs["http.response.status_code"] = status
        if status >= 500 or status <= 0:
            failure: str | None = error_type or (str(status) if status > 0 else "_OTHER")
        elif error_type and error_type != str(status):
            # Something broke after the status went out (a 200 whose body failed, a
            # dropped connection): the semantic conventions call that an error too.
            failure = error_type
        else:
            failure = None  # 1xx-4xx: not the server's failure
        if failure is not None:
            attrs["error.type"] = failure
            span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(attrs)  # one call: the SDK takes its lock once

    def _stages(
        self,
        span: trace.Span,
        start_ns: int,
        end_ns: int,
        stages: Sequence[tuple[str, float]],
    ) -> None:
        mode = self._stages_mode
        if not stages or mode == "off":
            return
        if mode == "events":
            if stages[-1][0] == "app":
                stages = stages[:-1]  # the remainder: the span itself shows it
            cursor = start_ns
            for stage, seconds in stages:
                cursor = min(cursor + max(round(seconds * 1e9), 0), end_ns)
                span.add_event(stage, {_STAGE_DURATION: max(seconds, 0.0)}, timestamp=cursor)
            return
        parent = trace.set_span_in_context(span)
        cursor = start_ns
        for stage, seconds in stages:
            stage_end = min(cursor + max(round(seconds * 1e9), 0), end_ns)
            child = self._tracer.tracer.start_span(
                stage, context=parent, kind=SpanKind.INTERNAL, start_time=cursor
            )
            child.end(end_time=stage_end)
            cursor = stage_end
