from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import BackendUnavailable, ConfigurationError, InvalidKey
from sysdesign_kit.principal import Principal, set_principal
from sysdesign_kit.ratelimit import (
    LimitRule,
    MemoryBackend,
    RateLimiter,
    RateLimitMiddleware,
    RuleSet,
    by_api_key,
    by_ip,
    tiered_limits,
)
from sysdesign_kit.ratelimit.middleware import SCOPE_KEY

Message = MutableMapping[str, Any]
App = Callable[[Any, Any, Any], Awaitable[None]]


class Reply:
    """What the app sent back."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        start = messages[0] if messages else {}
        self.type = start.get("type")
        self.status: int | None = start.get("status")
        self.headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
        self.body = b"".join(m.get("body", b"") for m in messages[1:])


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI app: 200 "ok" for http, accept-and-close for websockets."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})
        await send({"type": "websocket.close", "code": 1000})


async def call(
    app: App,
    path: str = "/",
    *,
    client: str | None = "203.0.113.9",
    headers: Iterable[tuple[bytes, bytes]] = (),
    principal: Principal | None = None,
    kind: str = "http",
    extensions: dict[str, Any] | None = None,
    scope_out: dict[str, Any] | None = None,
) -> Reply:
    """Send one request (or websocket handshake) through ``app``."""
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": (client, 5000) if client else None,
        "server": ("test", 80),
    }
    if extensions is not None:
        scope["extensions"] = extensions
    if principal is not None:
        set_principal(scope, principal)
    incoming = [
        {"type": "http.request", "body": b"", "more_body": False}
        if kind == "http"
        else {"type": "websocket.connect"}
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": f"{kind}.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if scope_out is not None:
        scope_out.update(scope)
    return Reply(sent)


PREMIUM = Principal("carol", tier="premium")


def tiered(clock: ManualClock, **kwargs: Any) -> RateLimitMiddleware:
    return RateLimitMiddleware(ok_app, limits=tiered_limits(clock=clock, **kwargs))


async def statuses(app: Any, n: int, **kwargs: Any) -> list[int | None]:
    return [(await call(app, **kwargs)).status for _ in range(n)]


@pytest.mark.parametrize(
    ("principal", "allowed", "retry_after"),
    [
        (None, 20, "3"),
        (Principal("alice", tier="free"), 100, "1"),
        (Principal("bob", tier="gold"), 100, "1"),  # unknown tier: limited as free
        (PREMIUM, 1000, "1"),
    ],
)
async def test_exact_sequence_per_tier(
    clock: ManualClock, principal: Principal | None, allowed: int, retry_after: str
) -> None:
    app = tiered(clock, per_ip="5000/minute")
    assert await statuses(app, allowed, principal=principal) == [200] * allowed
    denied = await call(app, principal=principal)
    assert denied.status == 429
    assert denied.headers["retry-after"] == retry_after
    clock.advance(60 / allowed)
    assert (await call(app, principal=principal)).status == 200
    assert (await call(app, principal=principal)).status == 429


async def test_per_ip_limit_applies_on_top_across_users(clock: ManualClock) -> None:
    app = tiered(clock)
    users = [Principal(f"user{i}", tier="free") for i in range(6)]
    for user in users[:5]:
        assert await statuses(app, 100, principal=user) == [200] * 100
    denied = await call(app, principal=users[5])
    assert denied.status == 429
    problem = json.loads(denied.body)
    assert problem["violated-policies"] == ["ip"]
    # Nothing was charged: the free bucket is still full.
    assert denied.headers["ratelimit"].startswith('"free";r=100;t=0, "ip";r=0;')
    assert (await call(app, principal=users[5], client="198.51.100.1")).status == 200


async def test_a_denial_charges_no_other_limit(clock: ManualClock) -> None:
    app = tiered(clock)
    await statuses(app, 25)  # 20 allowed, 5 denied by "anonymous"
    reply = await call(app, principal=Principal("dave"))
    assert reply.headers["ratelimit"] == '"free";r=99;t=1, "ip";r=479;t=3'


async def test_headers_and_problem_body(clock: ManualClock) -> None:
    app = tiered(clock)
    first = await call(app)
    assert first.headers["ratelimit-policy"] == '"anonymous";q=20;w=60, "ip";q=500;w=60'
    assert first.headers["ratelimit"] == '"anonymous";r=19;t=3, "ip";r=499;t=1'
    await statuses(app, 19)
    denied = await call(app)
    assert denied.status == 429
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.headers["content-length"] == str(len(denied.body))
    assert denied.headers["ratelimit"].startswith('"anonymous";r=0;t=3, ')
    assert json.loads(denied.body) == {
        "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "rate limit anonymous exceeded; retry in 3 seconds",
        "retry_after": 3,
        "violated-policies": ["anonymous"],
    }
    assert "x-ratelimit-limit" not in denied.headers


async def test_legacy_headers(clock: ManualClock) -> None:
    app = RateLimitMiddleware(ok_app, limits=tiered_limits(clock=clock), legacy_headers=True)
    reply = await call(app)
    assert (reply.headers["x-ratelimit-limit"], reply.headers["x-ratelimit-remaining"]) == (
        "20",
        "19",
    )


@pytest.mark.parametrize(
    ("path", "limited"),
    [
        ("/health", False),
        ("/health/db", False),
        ("/ready", False),
        ("/metrics", False),
        ("/healthz", True),
        ("/api/health", True),
        ("/", True),
    ],
)
async def test_exempt_paths(clock: ManualClock, path: str, limited: bool) -> None:
    app = tiered(clock, anonymous="1/minute")
    await call(app, "/")
    reply = await call(app, path)
    assert (reply.status == 429) is limited
    assert ("ratelimit" in reply.headers) is limited


async def test_custom_exempt_paths(clock: ManualClock) -> None:
    limits = tiered_limits(clock=clock, anonymous="1/minute")
    app = RateLimitMiddleware(ok_app, limits=limits, exempt_paths=["/status/"])
    assert [(await call(app, p)).status for p in ("/status", "/status/x", "/", "/health")] == [
        200,
        200,
        200,
        429,
    ]


async def test_lifespan_and_websocket_pass_through(clock: ManualClock) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await ok_app(scope, receive, send)

    limited = RateLimitMiddleware(app, limits=tiered_limits(clock=clock, anonymous="1/minute"))
    await call(limited, kind="lifespan")
    await statuses(limited, 2)
    reply = await call(limited, "/ws", kind="websocket")
    assert reply.type == "websocket.accept"
    assert "ratelimit" not in reply.headers
    assert seen == ["lifespan", "http", "websocket"]


@pytest.mark.parametrize(
    ("extensions", "denial"),
    [
        ({"websocket.http.response": {}}, "websocket.http.response.start"),
        (None, "websocket.close"),
        ({}, "websocket.close"),
    ],
)
async def test_limit_websockets(
    clock: ManualClock, extensions: dict[str, Any] | None, denial: str
) -> None:
    limits = tiered_limits(clock=clock, anonymous="1/minute")
    app = RateLimitMiddleware(ok_app, limits=limits, limit_websockets=True)
    accepted = await call(app, "/ws", kind="websocket", extensions=extensions)
    assert accepted.type == "websocket.accept"
    assert accepted.headers["x-app"] == "1"
    assert "ratelimit" in accepted.headers
    denied = await call(app, "/ws", kind="websocket", extensions=extensions)
    assert denied.type == denial
    if denial == "websocket.close":
        assert denied.messages[0]["code"] == 1008
    else:
        assert denied.status == 429
        assert denied.headers["retry-after"] == "60"
        assert json.loads(denied.body)["status"] == 429


class RemoteMemory(MemoryBackend):
    """Memory state answered as a remote backend would be: awaited, not decided in line."""

    local = False


@pytest.mark.parametrize("kind", [MemoryBackend, RemoteMemory])
async def test_shadow_mode_never_blocks_but_reports(
    clock: ManualClock, kind: type[MemoryBackend]
) -> None:
    backend = kind(clock=clock)
    shadow = RateLimiter("2/minute", name="new", backend=backend, shadow=True)
    enforced = RateLimiter("5/minute", name="old", backend=backend)
    rules = [LimitRule(shadow, by_ip()), LimitRule(enforced, by_ip())]
    app = RateLimitMiddleware(ok_app, limits=rules)
    replies = [await call(app) for _ in range(6)]
    assert [r.status for r in replies] == [200] * 5 + [429]
    assert replies[3].headers["ratelimit"].startswith('"new";r=0;')
    # the shadow denials did not stop the enforced limit from counting
    assert [r.headers["ratelimit"].split(", ")[1].split(";")[1] for r in replies[:5]] == [
        "r=4",
        "r=3",
        "r=2",
        "r=1",
        "r=0",
    ]
    assert json.loads(replies[5].body)["violated-policies"] == ["old"]


async def test_only_shadow_limits(clock: ManualClock) -> None:
    shadow = RateLimiter("1/minute", name="s", clock=clock, shadow=True)
    app = RateLimitMiddleware(ok_app, limits=[LimitRule(shadow, by_ip())])
    assert await statuses(app, 3) == [200, 200, 200]


async def test_decisions_are_left_in_scope(clock: ManualClock) -> None:
    scope: dict[str, Any] = {}
    await call(tiered(clock), scope_out=scope)
    assert [(d.policy, d.remaining) for d in scope[SCOPE_KEY]] == [("anonymous", 19), ("ip", 499)]


HUGE = b"x" * 10_240


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-forwarded-for", b"\xff\xfe\xfd")],
        [(b"x-forwarded-for", b"1.2.3.4, \xc3\x28")],
        [(b"x-forwarded-for", HUGE)],
        [(b"x-forwarded-for", b"1.2.3.4," * 2000)],
        [(b"x-forwarded-for", b"[::1]:99999, ::::, 300.1.1.1")],
        [(b"forwarded", b'for="\xff')],
        [(b"x-api-key", HUGE)],
        [(b"x-api-key", b"\x80\x81\x82")],
        [(b"x-custom", HUGE)] * 10,
        [(b"\xff\xfe", b"\xff")],
    ],
)
async def test_bad_input_never_500(clock: ManualClock, headers: list[tuple[bytes, bytes]]) -> None:
    backend = MemoryBackend(clock=clock)
    rules = [
        LimitRule(RateLimiter("2/minute", name="ip", backend=backend), by_ip(["10.0.0.0/8"])),
        LimitRule(RateLimiter("2/minute", name="key", backend=backend), by_api_key()),
    ]
    app = RateLimitMiddleware(ok_app, limits=rules)
    replies = [await call(app, client="10.0.0.1", headers=headers) for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 429]
    for reply in replies:
        assert reply.headers["ratelimit"].isascii()


async def test_bad_input_through_starlette_and_httpx(clock: ManualClock) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    limits = tiered_limits(clock=clock, trusted_proxies=["127.0.0.1"])
    app = Starlette(
        routes=[Route("/", hello)], middleware=[Middleware(RateLimitMiddleware, limits=limits)]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for value in (b"\xff\xfe", b"garbage, , ,", b"9" * 10_240, b"203.0.113.5"):
            reply = await client.get("/", headers=[(b"x-forwarded-for", value)])
            assert reply.status_code == 200, value
        assert reply.headers["ratelimit"] == '"anonymous";r=19;t=3, "ip";r=499;t=1'


async def test_key_function_rejecting_input_gets_400(clock: ManualClock) -> None:
    def strict(scope: Any) -> str:
        raise InvalidKey("the X-Tenant header is required")

    limiter = RateLimiter("5/minute", clock=clock)
    app = RateLimitMiddleware(ok_app, limits=[LimitRule(limiter, strict)])
    reply = await call(app)
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/problem+json"
    assert json.loads(reply.body)["detail"] == "the X-Tenant header is required"


class BrokenBackend(MemoryBackend):
    """A backend with a bug: raises something that is not BackendUnavailable."""

    error: Exception = RuntimeError("boom")

    def decide_many(self, items: Any, cost: int) -> Any:
        raise self.error


class RemoteBroken(BrokenBackend):
    local = False


class DownBackend(BrokenBackend):
    """A local backend that reports itself unavailable."""

    error = BackendUnavailable("down")


@pytest.mark.parametrize("kind", [BrokenBackend, RemoteBroken, DownBackend])
@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 429)])
async def test_backend_errors_follow_the_failure_policy(
    clock: ManualClock, fail_open: bool, status: int, kind: type[BrokenBackend]
) -> None:
    limiter = RateLimiter("5/minute", backend=kind(clock=clock), fail_open=fail_open)
    app = RateLimitMiddleware(ok_app, limits=[LimitRule(limiter, by_ip())])
    scope: dict[str, Any] = {}
    reply = await call(app, scope_out=scope)
    assert reply.status == status
    assert scope[SCOPE_KEY][0].degraded
    assert "ratelimit" in reply.headers


async def test_requests_no_rule_applies_to_pass_untouched(clock: ManualClock) -> None:
    limiter = RateLimiter("1/minute", clock=clock)
    app = RateLimitMiddleware(ok_app, limits=[LimitRule(limiter, by_api_key())])
    replies = [await call(app) for _ in range(3)]
    assert [r.status for r in replies] == [200] * 3
    assert "ratelimit" not in replies[0].headers


def test_configuration_errors(clock: ManualClock) -> None:
    with pytest.raises(ConfigurationError, match="share one backend"):
        RateLimitMiddleware(
            ok_app,
            limits=[
                LimitRule(RateLimiter("1/s", clock=clock), by_ip()),
                LimitRule(RateLimiter("1/s", clock=clock), by_ip()),
            ],
        )
    limits = tiered_limits(clock=clock)
    for bad in ("/health", ["health"]):
        with pytest.raises(ConfigurationError, match="exempt"):
            RateLimitMiddleware(ok_app, limits=limits, exempt_paths=bad)
    bad_name = RateLimiter("1/s", name="pr\u00e9mium", clock=clock)
    with pytest.raises(ConfigurationError, match="printable ASCII"):
        RateLimitMiddleware(ok_app, limits=[LimitRule(bad_name, by_ip())])


async def test_starlette_app_with_auth_layer_and_websocket(clock: ManualClock) -> None:
    async def hello(request: Request) -> JSONResponse:
        decisions = request.scope[SCOPE_KEY]
        return JSONResponse({"remaining": decisions[0].remaining})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    async def auth(scope: Any, receive: Any, send: Any) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"x-user":
                set_principal(scope, Principal(value.decode(), tier="premium"))
        await limited(scope, receive, send)

    inner = Starlette(routes=[Route("/", hello), WebSocketRoute("/ws", ws)])
    limited = RateLimitMiddleware(inner, limits=tiered_limits(clock=clock, anonymous="1/minute"))
    transport = httpx.ASGITransport(app=auth)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/")).json() == {"remaining": 0}
        assert (await client.get("/")).status_code == 429
        premium = await client.get("/", headers={"x-user": "carol"})
        assert premium.json() == {"remaining": 999}
        assert premium.headers["ratelimit-policy"] == '"premium";q=1000;w=60, "ip";q=500;w=60'
    assert (await call(auth, "/ws", kind="websocket")).type == "websocket.accept"


@pytest.mark.redis
async def test_tiers_on_a_real_redis(clock: ManualClock, redis_url: str, redis_prefix: str) -> None:
    from sysdesign_kit.ratelimit.redis import RedisBackend

    backend = RedisBackend.from_url(redis_url, prefix=redis_prefix, clock=clock, server_time=False)
    try:
        app = RateLimitMiddleware(ok_app, limits=tiered_limits(backend=backend, per_ip="25/minute"))
        assert await statuses(app, 21) == [200] * 20 + [429]
        users = [Principal(f"u{i}") for i in range(2)]
        # 20 anonymous + 5 free requests use up the address's 25; the 6th is denied by "ip"
        assert await statuses(app, 6, principal=users[0]) == [200] * 5 + [429]
        denied = await call(app, principal=users[1])
        assert json.loads(denied.body)["violated-policies"] == ["ip"]
        assert denied.headers["retry-after"] == "3"
        clock.advance(3)
        reply = await call(app, principal=users[1])
        assert reply.status == 200
        assert reply.headers["ratelimit"] == '"free";r=99;t=1, "ip";r=0;t=60'
    finally:
        await backend.aclose()


@pytest.mark.redis
@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 429)])
async def test_unreachable_redis_is_never_a_500(
    caplog: pytest.LogCaptureFixture, fail_open: bool, status: int
) -> None:
    from sysdesign_kit.ratelimit.redis import RedisBackend

    # Port 1 on loopback: connection refused at once, a real outage without a server to stop.
    backend = RedisBackend.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    limiter = RateLimiter("5/minute", name="api", backend=backend, fail_open=fail_open)
    app = RateLimitMiddleware(ok_app, limits=[LimitRule(limiter, by_ip())])
    try:
        reply = await call(app)
    finally:
        await backend.aclose()
    assert reply.status == status
    assert reply.headers["ratelimit-policy"] == '"api";q=5;w=60'
    # handled by the limiter's failure policy, not by the middleware's last-resort catch
    assert not [r for r in caplog.records if r.name == "sysdesign_kit.ratelimit"]


async def test_records_its_stage_on_the_request_timeline(clock: ManualClock) -> None:
    from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline

    timeline = Timeline()
    inner = tiered(clock)

    async def observed(scope: Any, receive: Any, send: Any) -> None:
        scope[TIMELINE_SCOPE_KEY] = timeline
        await inner(scope, receive, send)

    assert (await call(observed)).status == 200
    assert [name for name, _ in timeline.stages] == ["ratelimit"]
    assert 0 <= timeline.total("ratelimit") < 1


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
@pytest.mark.parametrize("kind", [MemoryBackend, RemoteMemory])
async def test_every_decision_is_published(
    clock: ManualClock, kind: type[MemoryBackend], algorithm: Any
) -> None:
    seen: list[Any] = []
    limits = tiered_limits(
        backend=kind(clock=clock),
        clock=clock,
        anonymous="2/minute",
        algorithm=algorithm,
        listeners=[seen.append],
    )
    app = RateLimitMiddleware(ok_app, limits=limits)
    assert await statuses(app, 3) == [200, 200, 429]
    assert [(e.policy, e.key, e.allowed, e.remaining) for e in seen] == [
        ("anonymous", "ip:203.0.113.9", True, 1),
        ("ip", "ip:203.0.113.9", True, 499),
        ("anonymous", "ip:203.0.113.9", True, 0),
        ("ip", "ip:203.0.113.9", True, 498),
        ("anonymous", "ip:203.0.113.9", False, 0),
        ("ip", "ip:203.0.113.9", True, 498),  # not charged: the request was denied
    ]


async def test_a_subclass_resolving_bad_keys_gets_the_checks(clock: ManualClock) -> None:
    class Careless(RuleSet):
        def resolve(self, scope: Any) -> Any:
            return [(self.rules[0].limiter, "")]

    limiter = RateLimiter("5/minute", clock=clock)
    app = RateLimitMiddleware(ok_app, limits=Careless([LimitRule(limiter, by_ip())]))
    reply = await call(app)
    assert reply.status == 400
    assert json.loads(reply.body)["detail"] == "a key must not be empty"
