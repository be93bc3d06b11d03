from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.websockets import WebSocket

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import Event, RequestFinished, RequestStarted, subscribe
from sysdesign_kit.observability import REQUEST_ID_SCOPE_KEY, ObservabilityMiddleware
from sysdesign_kit.observability.request_id import current_request_id, parse_request_id
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY

Message = MutableMapping[str, Any]
App = Callable[[Any, Any, Any], Awaitable[None]]


class Reply:
    def __init__(self, messages: list[Message], scope: dict[str, Any]) -> None:
        self.messages = messages
        self.scope = scope
        starts = [m for m in messages if m["type"] == "http.response.start"]
        self.starts = len(starts)
        self.status: int | None = starts[0]["status"] if starts else None
        headers = starts[0].get("headers", []) if starts else []
        self.headers = {k.decode(): v.decode("latin-1") for k, v in headers}
        self.body = b"".join(m.get("body", b"") for m in messages if "body" in m)


async def call(
    app: App,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Iterable[tuple[bytes, bytes]] = (),
    kind: str = "http",
    incoming: list[Message] | None = None,
) -> Reply:
    """One request (or websocket / lifespan conversation) through ``app``."""
    scope: dict[str, Any] = {"type": kind, "asgi": {"version": "3.0"}}
    if kind != "lifespan":
        scope.update(
            http_version="1.1", method=method, scheme="http", path=path, root_path="",
            raw_path=path.encode(), query_string=b"", headers=list(headers),
            client=("203.0.113.9", 5000), server=("test", 80),
        )  # fmt: skip
    queue = list(incoming or [{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[Message] = []

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return Reply(sent, scope)


async def no_body() -> Any:
    return {"type": "http.request", "body": b""}


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


def status_app(status: int) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def recorded(listener: list[Event], kind: type[Event]) -> list[Any]:
    return [event for event in listener if isinstance(event, kind)]


def observed(app: App, **kwargs: Any) -> tuple[ObservabilityMiddleware, list[Event]]:
    events: list[Event] = []
    return ObservabilityMiddleware(app, listeners=[events.append], **kwargs), events


async def test_events_started_then_finished() -> None:
    middleware, events = observed(ok)
    reply = await call(middleware, method="POST")
    assert reply.status == 200
    started, finished = events
    assert isinstance(started, RequestStarted)
    assert isinstance(finished, RequestFinished)
    request_id = reply.headers["x-request-id"]
    assert started == RequestStarted("http", "POST", "", request_id)
    assert (finished.method, finished.route, finished.request_id) == (
        "POST",
        "unmatched",
        request_id,
    )
    assert (finished.status, finished.error_type) == (200, None)
    assert [name for name, _ in finished.stages] == ["app"]
    assert 0 <= finished.stages[0][1] <= finished.duration


async def test_process_wide_subscribers_get_the_events_too() -> None:
    middleware, own = observed(ok)
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    try:
        await call(middleware)
    finally:
        unsubscribe()
    assert [type(e) for e in seen] == [type(e) for e in own] == [RequestStarted, RequestFinished]


async def test_a_failing_listener_does_not_fail_the_request() -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    assert (await call(ObservabilityMiddleware(ok, listeners=[broken]))).status == 200


class Observer:
    """A request observer that is also a listener: takes plain calls, and any other event."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.events: list[Event] = []
        self.fail = fail

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def on_request_start(self, method: str) -> None:
        self.calls.append(("start", method))
        if self.fail:
            raise RuntimeError("observer down")

    def on_request_end(
        self, method: str, route: str, status: int, duration: float, error_type: str | None
    ) -> None:
        self.calls.append(("end", method, route, status, error_type, duration >= 0))
        if self.fail:
            raise RuntimeError("observer down")


async def test_request_observers_get_plain_calls_and_listeners_events() -> None:
    observer, events = Observer(), []
    middleware = ObservabilityMiddleware(
        status_app(503), listeners=[observer, events.append], access_log=False
    )
    await call(middleware, method="PUT")
    assert observer.calls == [("start", "PUT"), ("end", "PUT", "unmatched", 503, "503", True)]
    assert observer.events == []
    assert [type(e) for e in events] == [RequestStarted, RequestFinished]
    finished = events[1]
    assert isinstance(finished, RequestFinished)
    assert (finished.status, finished.error_type, finished.route) == (503, "503", "unmatched")


async def test_a_failing_observer_does_not_fail_the_request() -> None:
    observer, events = Observer(fail=True), []
    middleware = ObservabilityMiddleware(ok, listeners=[observer, events.append])
    assert (await call(middleware)).status == 200
    assert [c[0] for c in observer.calls] == ["start", "end"]
    assert len(events) == 2


async def test_an_observer_joining_mid_request_gets_no_unpaired_end() -> None:
    late = Observer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        unsubscribe = subscribe(late)
        try:
            await ok(scope, receive, send)
        finally:
            unsubscribe_later.append(unsubscribe)

    unsubscribe_later: list[Callable[[], None]] = []
    middleware = ObservabilityMiddleware(app, listeners=[])
    try:
        await call(middleware)
        assert late.calls == []  # it joined after the start: no end either
        await call(middleware)
        assert [c[0] for c in late.calls] == ["start", "end"]
    finally:
        for unsubscribe in unsubscribe_later:
            unsubscribe()


@pytest.mark.parametrize(("status", "error_type"), [(200, None), (404, None), (503, "503")])
async def test_error_type_only_for_server_errors(status: int, error_type: str | None) -> None:
    middleware, events = observed(status_app(status))
    await call(middleware)
    (finished,) = recorded(events, RequestFinished)
    assert (finished.status, finished.error_type) == (status, error_type)


async def test_app_raising_before_the_response_gets_a_500_and_propagates() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError("boom")

    middleware, events = observed(broken, server_timing=True)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(KeyError, match="boom"):
        await middleware(scope, no_body, send)
    reply = Reply(sent, scope)
    assert (reply.status, reply.body, reply.starts) == (500, b"Internal Server Error", 1)
    assert parse_request_id(reply.headers["x-request-id"].encode())
    assert "total;dur=" in reply.headers["server-timing"]
    (finished,) = recorded(events, RequestFinished)
    assert (finished.status, finished.error_type) == (500, "KeyError")


async def test_app_raising_after_the_response_started_keeps_its_status() -> None:
    async def half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise OSError("disk gone mid-body")

    middleware, events = observed(half)
    with pytest.raises(OSError, match="mid-body"):
        await call(middleware)
    (finished,) = recorded(events, RequestFinished)
    assert (finished.status, finished.error_type) == (200, "OSError")


async def test_app_that_never_answers_is_a_500() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    middleware, events = observed(silent)
    await call(middleware)
    (finished,) = recorded(events, RequestFinished)
    assert (finished.status, finished.error_type) == (500, "500")


async def test_cancelled_request_is_reported_and_cancellation_propagates() -> None:
    entered = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    middleware, events = observed(slow)
    task = asyncio.ensure_future(call(middleware))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (finished,) = recorded(events, RequestFinished)
    assert (finished.status, finished.error_type) == (499, "CancelledError")


async def test_starlette_server_error_middleware_sees_the_exception() -> None:
    async def boom(request: Request) -> PlainTextResponse:
        raise ValueError("bad")

    inner = Starlette(routes=[Route("/boom", boom)])
    middleware, events = observed(inner)
    with pytest.raises(ValueError, match="bad"):
        await call(middleware, "/boom")
    (finished,) = recorded(events, RequestFinished)
    assert (finished.route, finished.status, finished.error_type) == ("/boom", 500, "ValueError")


async def test_own_headers_are_added_without_touching_the_apps_list() -> None:
    shared = [(b"x-app", b"1")]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": shared})
        await send({"type": "http.response.body", "body": b""})

    reply = await call(ObservabilityMiddleware(app, server_timing=True))
    assert {"x-app", "x-request-id", "server-timing"} <= set(reply.headers)
    assert shared == [(b"x-app", b"1")]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-request-id", b"\x00\xff\xfe" * 3000)],
        [(b"x-request-id", b"a"), (b"x-request-id", b"b\nc")],
        [(b"user-agent", b"\xc3\x28\x00\r\n" * 500), (b"cookie", b"\xff" * 20000)],
        [(b"", b""), (b"\xff", b"\xff"), (b"host", b"")],
        [(b"traceparent", b"zz-not-a-trace"), (b"authorization", b"\x00")],
    ],
)
async def test_garbage_headers_never_500(headers: list[tuple[bytes, bytes]]) -> None:
    events: list[Event] = []
    app = ObservabilityMiddleware(ok, listeners=[events.append], server_timing=True)
    reply = await call(app, headers=headers)
    assert reply.status == 200
    assert parse_request_id(reply.headers["x-request-id"].encode())
    assert recorded(events, RequestFinished)[0].status == 200


async def test_websocket_and_lifespan_pass_through_untouched() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))
        message = await receive()
        reply = {
            "websocket.connect": "websocket.accept",
            "lifespan.startup": "lifespan.startup.complete",
        }
        await send({"type": reply[message["type"]], "headers": [(b"x-app", b"1")]})

    middleware, events = observed(app, server_timing=True)
    ws = await call(middleware, kind="websocket", incoming=[{"type": "websocket.connect"}])
    life = await call(middleware, kind="lifespan", incoming=[{"type": "lifespan.startup"}])
    assert ws.messages == [{"type": "websocket.accept", "headers": [(b"x-app", b"1")]}]
    assert life.messages == [{"type": "lifespan.startup.complete", "headers": [(b"x-app", b"1")]}]
    assert all(TIMELINE_SCOPE_KEY not in s and REQUEST_ID_SCOPE_KEY not in s for s in seen)
    assert events == []


async def test_scope_carries_the_timeline_and_the_request_id() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope, current=current_request_id.get())
        await ok(scope, receive, send)

    reply = await call(ObservabilityMiddleware(app))
    assert seen[REQUEST_ID_SCOPE_KEY] == seen["current"] == reply.headers["x-request-id"]
    assert seen[TIMELINE_SCOPE_KEY].stages == []
    assert current_request_id.get() is None


# Route templates -----------------------------------------------------------------------


async def endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.close()  # pragma: no cover - websockets are not observed


shared_router = Router(routes=[Route("/leaf/{n}", endpoint)])
STARLETTE = Starlette(
    routes=[
        Route("/", endpoint),
        Route("/items/{item_id:int}", endpoint),
        Route("/only-post", endpoint, methods=["POST"]),
        WebSocketRoute("/ws", ws_endpoint),
        Mount("/api/{version}", routes=[Route("/users/{user_id}", endpoint)]),
        Mount("/a", app=shared_router),
        Mount("/b", app=shared_router),
        Mount("/static", app=ok),
        Host("admin.example", app=Router(routes=[Route("/panel/{p}", endpoint)])),
    ]
)


@pytest.mark.parametrize(
    ("path", "method", "headers", "route"),
    [
        ("/", "GET", [], "/"),
        ("/items/42", "GET", [], "/items/{item_id}"),
        ("/items/not-a-number", "GET", [], "unmatched"),
        ("/only-post", "GET", [], "/only-post"),  # 405: the partial match
        ("/api/v2/users/7", "GET", [], "/api/{version}/users/{user_id}"),
        ("/api/v2/nothing", "GET", [], "/api/{version}/{path}"),
        ("/a/leaf/1", "GET", [], "/a/leaf/{n}"),
        ("/b/leaf/2", "GET", [], "/b/leaf/{n}"),  # the same route object, mounted twice
        ("/static/css/site.css", "GET", [], "/static/{path}"),
        ("/panel/3", "GET", [(b"host", b"admin.example")], "/panel/{p}"),
        ("/nowhere/at/all", "GET", [], "unmatched"),
    ],
)
async def test_route_templates_from_starlette(
    path: str, method: str, headers: list[tuple[bytes, bytes]], route: str
) -> None:
    for routes in (None, STARLETTE.routes):  # what Starlette recorded; our own matching
        app: App = STARLETTE if routes is None else copying_scope(STARLETTE)
        middleware, events = observed(app, routes=routes)
        for _ in range(2):  # learned, then cached
            await call(middleware, path, method=method, headers=headers)
        assert [e.route for e in recorded(events, RequestFinished)] == [route, route]


def copying_scope(app: App) -> App:
    """A layer that hands the app a copy of the scope, hiding what the router records."""

    async def layer(scope: Any, receive: Any, send: Any) -> None:
        await app(dict(scope), receive, send)

    return layer


async def test_without_routes_a_hidden_route_is_unmatched() -> None:
    middleware, events = observed(copying_scope(STARLETTE))
    await call(middleware, "/items/1")
    assert recorded(events, RequestFinished)[0].route == "unmatched"


def fastapi_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/orders")

    @router.get("/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"order_id": order_id}

    @app.get("/users/{user_id}/posts/{post_id}")
    async def post(user_id: str, post_id: int) -> dict[str, str]:
        return {"user": user_id}

    app.include_router(router)
    app.include_router(router, prefix="/v2")  # the same routes again, under a prefix
    outer = APIRouter(prefix="/outer")
    outer.add_api_route("/plain/{x}", endpoint)  # a Starlette-style endpoint
    nested = APIRouter(prefix="/nested")

    @nested.get("/{deep}")
    async def deep(deep: str) -> str:
        return deep

    outer.include_router(nested)
    app.include_router(outer, prefix="/api")
    sub = FastAPI()

    @sub.get("/things/{thing}")
    def thing(thing: str) -> str:
        return thing

    app.mount("/sub", sub)
    return app


@pytest.mark.parametrize(
    ("path", "route", "status"),
    [
        ("/users/u1/posts/9", "/users/{user_id}/posts/{post_id}", 200),
        ("/orders/5", "/orders/{order_id}", 200),
        ("/orders/not-int", "/orders/{order_id}", 422),
        ("/v2/orders/5", "/v2/orders/{order_id}", 200),
        ("/api/outer/plain/1", "/api/outer/plain/{x}", 200),
        ("/api/outer/nested/z", "/api/outer/nested/{deep}", 200),
        ("/sub/things/x", "/sub/things/{thing}", 200),
        ("/missing", "unmatched", 404),
    ],
)
async def test_route_templates_from_fastapi(path: str, route: str, status: int) -> None:
    app = fastapi_app()
    # what FastAPI recorded; our own matching against the app's routes (given the app)
    for middleware, events in (observed(app), observed(copying_scope(app), routes=app)):
        reply = await call(middleware, path)
        (finished,) = recorded(events, RequestFinished)
        assert (reply.status, finished.route, finished.status) == (status, route, status)


async def test_route_added_after_the_first_request_is_learned() -> None:
    app = Starlette(routes=[Route("/one", endpoint)])
    middleware, events = observed(app)
    await call(middleware, "/one")
    app.router.routes.append(Mount("/late", routes=[Route("/{x}", endpoint)]))
    await call(middleware, "/late/7")
    assert [e.route for e in recorded(events, RequestFinished)] == ["/one", "/late/{x}"]


# Tracer hooks --------------------------------------------------------------------------


class FakeTracer:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def start(self, scope: Any) -> object:
        self.calls.append(("start", (scope["path"], asyncio.current_task())))
        if self.fail:
            raise RuntimeError("tracer down")
        return "handle"

    def finish(self, handle: object | None, **kwargs: Any) -> None:
        self.calls.append(("finish", (handle, kwargs, asyncio.current_task())))
        if self.fail:
            raise RuntimeError("tracer down")


async def test_tracer_start_before_the_app_and_finish_after_in_the_same_task() -> None:
    tracer = FakeTracer()
    order: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        order.append(f"app after {tracer.calls[-1][0]}")
        await STARLETTE(scope, receive, send)

    await call(ObservabilityMiddleware(app, tracer=tracer), "/items/3")
    await call(ObservabilityMiddleware(app, tracer=tracer), "/nope")
    (_, (path, task)), (_, (handle, kwargs, finish_task)), *_ = tracer.calls
    assert order == ["app after start", "app after start"]
    assert (path, handle, task) == ("/items/3", "handle", finish_task)
    assert kwargs["method"] == "GET"
    assert kwargs["route"] == "/items/{item_id}"
    assert (kwargs["status"], kwargs["error_type"]) == (200, None)
    assert [name for name, _ in kwargs["stages"]] == ["app"]
    assert tracer.calls[3][1][1]["route"] == ""  # unmatched: no http.route on the span


async def test_a_failing_tracer_never_fails_the_request() -> None:
    tracer = FakeTracer(fail=True)
    middleware, events = observed(ok, tracer=tracer)
    assert (await call(middleware)).status == 200
    assert [name for name, _ in tracer.calls] == ["start", "finish"]
    assert tracer.calls[1][1][0] is None  # start failed: finish gets no handle
    assert len(events) == 2


async def test_with_the_real_request_tracer() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sysdesign_kit.observability.tracing import RequestTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = ObservabilityMiddleware(STARLETTE, tracer=RequestTracer(tracer_provider=provider))
    await call(app, "/items/42")
    server = [span for span in exporter.get_finished_spans() if span.name.startswith("GET")]
    assert [span.name for span in server] == ["GET /items/{item_id}"]
    assert server[0].attributes is not None
    assert server[0].attributes["http.route"] == "/items/{item_id}"
    assert server[0].attributes["http.response.status_code"] == 200
    provider.shutdown()


async def test_with_the_real_prometheus_sink() -> None:
    from prometheus_client import CollectorRegistry

    from sysdesign_kit.observability import PrometheusSink

    registry = CollectorRegistry()
    app = ObservabilityMiddleware(STARLETTE, listeners=[PrometheusSink(registry=registry)])
    await call(app, "/items/42")
    await call(app, "/items/43")
    labels = {"method": "GET", "route": "/items/{item_id}", "status_code": "200"}
    count = registry.get_sample_value("http_server_request_duration_seconds_count", labels)
    active = registry.get_sample_value("http_server_active_requests", {"method": "GET"})
    assert (count, active) == (2.0, 0.0)


def test_importing_the_package_needs_no_optional_dependency() -> None:
    code = (
        "import sys, sysdesign_kit.observability as o; o.ObservabilityMiddleware; "
        "print(sorted(m for m in ('prometheus_client', 'opentelemetry', 'starlette') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request_id_header": "x request id"}, "not a valid HTTP header name"),
        ({"request_id_header": ""}, "not a valid HTTP header name"),
        ({"tracer": object()}, "start\\(\\) and finish\\(\\)"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ObservabilityMiddleware(ok, **kwargs)


async def test_a_mounted_app_whose_routes_is_a_method_does_not_break_templates() -> None:
    class Mounted:
        def routes(self) -> list[object]:  # a method, not a route list
            return []

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await PlainTextResponse("mounted")(scope, receive, send)

    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("item")

    seen: list[Any] = []
    app = Starlette(routes=[Route("/items/{id}", item), Mount("/", Mounted())])
    app.add_middleware(ObservabilityMiddleware, listeners=[seen.append])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/items/3")).status_code == 200
        assert (await client.get("/other")).status_code == 200
    routes = [e.route for e in seen if isinstance(e, RequestFinished)]
    assert routes[0] == "/items/{id}"
