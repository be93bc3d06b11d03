"""``ObservabilityMiddleware``: request id, timeline, events, span, access log, Server-Timing.

One pure-ASGI layer, meant to be the outermost, does per HTTP request:

1. takes the caller's ``X-Request-ID`` if well-formed, else mints one; stores it in
   ``scope["sysdesign_kit.request_id"]`` and in a context variable (log lines emitted
   during the request can carry it), and sends it back on the response;
2. puts a `Timeline` in the scope, on which inner layers record their stages;
3. publishes `RequestStarted` (its ``route`` is ``""``: routing has not happened yet),
   calls ``tracer.start(scope)`` when given a tracer, runs the app, then resolves the
   route template (see `RouteTemplates`), calls ``tracer.finish`` and publishes
   `RequestFinished` (listeners such as ``PrometheusSink`` turn it into metrics), and
   writes the access-log line. ``RequestFinished.stages`` is the timeline plus ``app``
   (time in the app outside the recorded stages); its ``error_type`` is the exception's
   class name when the app raised, the status code (``"503"``) for a 5xx, else ``None``;
   a request cancelled before it answered (the client left) is reported as ``499``;
4. optionally adds ``Server-Timing`` (see `render_server_timing`) to the response.

When the app raises, the layer answers ``500`` itself if no response has started (so the
error carries the request id too), reports the request with the exception's class name
as ``error_type``, and re-raises, as Starlette's ``ServerErrorMiddleware`` and ASGI
servers expect. Websocket and lifespan scopes pass through untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, Protocol, runtime_checkable

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import (
    Listener,
    Publisher,
    RequestFinished,
    RequestStarted,
    deliver,
)
from sysdesign_kit.observability.logs import ACCESS_LOGGER, AccessLog
from sysdesign_kit.observability.request_id import (
    REQUEST_ID_SCOPE_KEY,
    current_request_id,
    new_request_id,
    parse_request_id,
)
from sysdesign_kit.observability.routes import UNMATCHED, RouteTemplates
from sysdesign_kit.observability.server_timing import render_server_timing
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline

__all__ = ["ObservabilityMiddleware", "RequestObserver", "RequestTracing"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger("sysdesign_kit.observability")
_events_log = logging.getLogger("sysdesign_kit.events")  # where listeners' failures go
_clock = time.perf_counter  # the Timeline's clock: stages and totals must agree
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_SERVER_TIMING = b"server-timing"
_ERROR_BODY = b"Internal Server Error"
_ERROR_HEADERS = (
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_ERROR_BODY)).encode()),
)
# A client that went away before any response: nginx's "client closed request".
_CLIENT_CLOSED = 499


class RequestTracing(Protocol):
    """What the middleware needs of a tracer (``RequestTracer`` in ``tracing.py``).

    ``start`` runs in the request's task before the app, so a span it makes current stays
    current while the app runs; ``finish`` runs in the same task afterwards.
    """

    def start(self, scope: Scope) -> object | None:
        """Begin tracing the request of ``scope``; the return value goes to `finish`."""
        ...  # pragma: no cover

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
        """End tracing of the request that `start` returned ``handle`` for."""
        ...  # pragma: no cover


@runtime_checkable
class RequestObserver(Protocol):
    """A listener that also takes the request events as plain calls (``PrometheusSink``).

    For every request it would get `RequestStarted` and `RequestFinished` for, the
    middleware calls these instead: the same facts without building an event object and
    routing it (what the request-duration metrics need costs a few microseconds less per
    request). Listeners without these methods get the events.
    """

    def on_request_start(self, method: str) -> None:
        """A request with this method entered the observed stack."""
        ...  # pragma: no cover

    def on_request_end(
        self, method: str, route: str, status: int, duration: float, error_type: str | None
    ) -> None:
        """The request left it: as `RequestFinished` (route template, seconds...)."""
        ...  # pragma: no cover


def _split(
    listeners: tuple[Listener, ...],
) -> tuple[tuple[RequestObserver, ...], tuple[Listener, ...]]:
    observers: list[RequestObserver] = []
    plain: list[Listener] = []
    for item in listeners:
        if isinstance(item, RequestObserver):
            observers.append(item)
        else:
            plain.append(item)
    return tuple(observers), tuple(plain)


class _Exchange:
    """One request's state, and the send wrapper that notes the status and adds headers."""

    __slots__ = (
        "app_started", "error_type", "extra", "handle", "headers", "observers", "plain",
        "request_id", "root_path", "send", "started", "status", "timeline", "timing",
    )  # fmt: skip

    def __init__(self, send: Send, timeline: Timeline, timing: bool) -> None:
        self.send = send
        self.timeline = timeline
        self.timing = timing
        self.headers: list[tuple[bytes, bytes]] = []
        # Headers of layers fused into the app (the gateway's edge): on the app's answers,
        # ahead of this layer's own, as if those layers had wrapped ``send`` themselves.
        self.extra: Sequence[tuple[bytes, bytes]] = ()
        # The listeners met at the start, so one that joins mid-request gets no end without
        # a start (an in-flight gauge would drift).
        self.observers: tuple[RequestObserver, ...] = ()
        self.plain: tuple[Listener, ...] = ()
        self.request_id = ""
        self.root_path = ""
        self.handle: object | None = None
        self.error_type: str | None = None
        self.app_started = 0.0
        self.started = False
        self.status = 0

    def in_app(self, now: float) -> float:
        """Seconds in the app until ``now``, outside the stages recorded inside it."""
        return now - self.app_started - self.timeline.spent

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            if self.timing:
                now = _clock()
                timeline = self.timeline
                timing = render_server_timing(
                    timeline.stages, self.in_app(now), now - timeline.started
                )
                self.headers.append((_SERVER_TIMING, timing))
            if self.headers or self.extra:
                message["headers"] = [*message.get("headers", ()), *self.extra, *self.headers]
        await self.send(message)


class ObservabilityMiddleware:
    """Request id, timeline, events, tracing, access log and Server-Timing in one layer.

    Args:
        app: the ASGI app to observe.
        listeners: event listeners of this layer (a ``PrometheusSink``...); listeners
            attached process-wide with `subscribe` get its events too.
        request_id: give every request an id (scope, context variable, response header).
        request_id_header: the request/response header carrying it.
        trust_request_id: accept a well-formed id sent by the caller (behind a proxy that
            sets it); with ``False`` every request gets a fresh one.
        server_timing: add a ``Server-Timing`` header with the request's timeline. It
            tells callers how long each stage took, so enable it deliberately.
        access_log: write one line per request to ``access_logger`` (at INFO; nothing is
            built when that logger is disabled).
        access_logger: the logger, or its name.
        redact_query_params: query parameters to redact in the access log besides the
            built-in credential names.
        tracer: a ``RequestTracer`` (or anything with the same ``start``/``finish``).
        routes: the app's routes (or the app), matched to find the route template when
            the app itself does not record it in the scope.
        name: the ``component`` of the published events.

    Raises:
        ConfigurationError: a header name that is not an HTTP token, or a tracer without
            ``start``/``finish``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        listeners: Iterable[Listener] = (),
        request_id: bool = True,
        request_id_header: str = "x-request-id",
        trust_request_id: bool = True,
        server_timing: bool = False,
        access_log: bool = True,
        access_logger: logging.Logger | str = ACCESS_LOGGER,
        redact_query_params: Iterable[str] = (),
        tracer: RequestTracing | None = None,
        routes: Sequence[Any] | Any | None = None,
        name: str = "http",
    ) -> None:
        header = request_id_header.strip().lower()
        if not header or not set(header) <= _TCHAR:
            raise ConfigurationError(
                f"request_id_header {request_id_header!r} is not a valid HTTP header name"
            )
        if tracer is not None and not (
            callable(getattr(tracer, "start", None)) and callable(getattr(tracer, "finish", None))
        ):
            raise ConfigurationError(f"tracer {tracer!r} must have start() and finish() methods")
        self.app = app
        self.name = name
        self.events = Publisher(listeners)
        self.tracer = tracer
        self._request_id = request_id
        self._header = header.encode("ascii")
        self._trust = trust_request_id
        self._server_timing = server_timing
        self._access = AccessLog(access_logger, redact_query_params=redact_query_params)
        self._access_logger = self._access.logger
        self._access_on = access_log
        self._routes = RouteTemplates(routes)
        self._split_of: tuple[Listener, ...] | None = None
        self._split: tuple[tuple[RequestObserver, ...], tuple[Listener, ...]] = ((), ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.observe(scope, receive, send, self.app)

    async def observe(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Observe one HTTP request served by ``app`` (instead of this layer's own app).

        For a layer that runs other layers' work in the same frame (the gateway's fused
        edge): ``app`` gets the scope with the timeline and request id in it, and a
        ``send`` whose ``extra`` headers (a sequence, empty at first) are added to the
        response the app starts, ahead of this layer's own.
        """
        timeline = Timeline()
        scope[TIMELINE_SCOPE_KEY] = timeline
        exchange = _Exchange(send, timeline, self._server_timing)
        token = None
        if self._request_id:
            request_id = None
            if self._trust:
                name = self._header
                for key, value in scope.get("headers", ()):
                    if key == name:
                        request_id = parse_request_id(value)
                        break
            if request_id is None:
                request_id = new_request_id()
            scope[REQUEST_ID_SCOPE_KEY] = request_id
            token = current_request_id.set(request_id)
            exchange.request_id = request_id
            exchange.headers.append((self._header, request_id.encode("ascii")))
        # Events, span and access log all need the route and the stages at the end; with
        # none of them on, the request only pays for the id and the timeline.
        access = self._access_on and self._access_logger.isEnabledFor(logging.INFO)
        observed = access or bool(self.events.listeners) or self.tracer is not None
        if observed:
            self._start(scope, exchange)
        exchange.app_started = _clock()
        try:
            await app(scope, receive, exchange)
        except BaseException as exc:
            exchange.error_type = type(exc).__name__
            if not exchange.started and isinstance(exc, Exception):
                await _answer_500(exchange)
            raise
        finally:
            if observed:
                self._finish(scope, exchange, access)
            if token is not None:
                current_request_id.reset(token)

    def _start(self, scope: Scope, exchange: _Exchange) -> None:
        exchange.root_path = scope.get("root_path", "")  # a Mount below will change it
        listeners = self.events.listeners
        if listeners:
            if listeners is not self._split_of:
                self._split = _split(listeners)
                self._split_of = listeners
            observers, plain = exchange.observers, exchange.plain = self._split
            method = scope["method"]
            for observer in observers:
                try:
                    observer.on_request_start(method)
                except Exception:
                    _events_log.exception("request observer %r failed on start", observer)
            if plain:
                deliver(plain, RequestStarted(self.name, method, "", exchange.request_id))
        if self.tracer is not None:
            try:
                exchange.handle = self.tracer.start(scope)
            except Exception:
                _log.exception("tracer.start failed; the request goes on untraced")

    def _finish(self, scope: Scope, exchange: _Exchange, access: bool) -> None:
        now = _clock()
        duration = now - exchange.timeline.started
        error_type = exchange.error_type
        if exchange.started:
            status = exchange.status
        else:
            status = 500 if error_type != "CancelledError" else _CLIENT_CLOSED
        if error_type is None and status >= 500:
            error_type = str(status)  # OpenTelemetry's error.type for an HTTP failure
        try:
            route = self._routes.resolve(scope, exchange.root_path)
        except Exception:
            _log.exception("could not resolve the route template")
            route = UNMATCHED
        method = scope["method"]
        for observer in exchange.observers:
            try:
                observer.on_request_end(method, route, status, duration, error_type)
            except Exception:
                _events_log.exception("request observer %r failed on end", observer)
        request_id = exchange.request_id
        if not (exchange.plain or self.tracer is not None or access):
            return
        in_app = exchange.in_app(now)
        stages = (*exchange.timeline.stages, ("app", in_app if in_app > 0.0 else 0.0))
        if exchange.plain:
            deliver(
                exchange.plain,
                RequestFinished(
                    self.name, method, route, request_id, status, duration, stages, error_type
                ),
            )
        if self.tracer is not None:
            try:
                self.tracer.finish(
                    exchange.handle,
                    method=method,
                    # the tracer's contract: "" when no route matched (no http.route)
                    route=route if route != UNMATCHED else "",
                    status=status,
                    error_type=error_type,
                    stages=stages,
                )
            except Exception:
                _log.exception("tracer.finish failed")
        if access:
            try:
                self._access.emit(
                    scope,
                    request_id=request_id,
                    route=route,
                    status=status,
                    duration=duration,
                    error_type=error_type,
                )
            except Exception:  # a user's record factory, say: never fail the request
                _log.exception("could not write the access log line")


async def _answer_500(send: _Exchange) -> None:
    send.extra = ()  # the fused layers' headers were for the app's answer
    try:
        await send({"type": "http.response.start", "status": 500, "headers": list(_ERROR_HEADERS)})
        await send({"type": "http.response.body", "body": _ERROR_BODY})
    except Exception:  # the client is gone; the app's exception is what matters
        _log.debug("could not send the 500 response", exc_info=True)
