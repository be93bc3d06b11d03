from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.events import Event, RequestFinished
from sysdesign_kit.observability import ObservabilityMiddleware, render_server_timing
from sysdesign_kit.observability.server_timing import stage_token
from sysdesign_kit.ratelimit import (
    LimitRule,
    MemoryBackend,
    RateLimiter,
    RateLimitMiddleware,
    by_ip,
)
from sysdesign_kit.timeline import get_timeline


@pytest.mark.parametrize(
    ("stages", "app", "total", "expected"),
    [
        ([], 0.0031, 0.0035, "app;dur=3.100, total;dur=3.500"),
        (
            [("waf", 0.00002), ("ratelimit", 0.00001), ("auth", 0.0004)],
            0.0031,
            0.0036,
            "waf;dur=0.020, ratelimit;dur=0.010, auth;dur=0.400, app;dur=3.100, total;dur=3.600",
        ),
        ([("cache", 1.5)], 0.25, 1.75, "cache;dur=1500.000, app;dur=250.000, total;dur=1750.000"),
        ([("bad", -1.0), ("nan", float("nan"))], -0.5, float("inf"),
         "bad;dur=0.000, nan;dur=0.000, app;dur=0.000, total;dur=0.000"),
    ],
)  # fmt: skip
def test_render(stages: list[tuple[str, float]], app: float, total: float, expected: str) -> None:
    assert render_server_timing(stages, app, total) == expected.encode()


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("ratelimit", "ratelimit"),
        ("rate limit", "rate_limit"),
        ("a;dur=9, b", "a_dur_9__b"),
        ('quo"te', "quo_te"),
        ("ünïcode", "_n_code"),
        ("", "stage"),
        ("x" * 100, "x" * 64),
        ("db.query-1", "db.query-1"),
    ],
)
def test_stage_names_become_tokens(name: str, token: str) -> None:
    assert stage_token(name) == token
    assert stage_token(name) == token  # cached


async def hello(request: Request) -> PlainTextResponse:
    timeline = get_timeline(request.scope)
    assert timeline is not None
    start = timeline.now()
    timeline.since("db query", start)
    return PlainTextResponse("hi")


def stack(clock: ManualClock, events: list[Event], rate: str = "5/minute") -> Any:
    limiter = RateLimiter(rate, backend=MemoryBackend(clock=clock), name="per_ip")
    limited = RateLimitMiddleware(
        Starlette(routes=[Route("/hello", hello)]), limits=[LimitRule(limiter, by_ip())]
    )
    return ObservabilityMiddleware(limited, listeners=[events.append], server_timing=True)


ENTRY = re.compile(r"([^;,\s]+);dur=(\d+\.\d{3})")


def entries(header: str) -> list[tuple[str, float]]:
    return [(name, float(ms)) for name, ms in ENTRY.findall(header)]


async def test_stages_of_inner_layers_appear_in_order_with_app_and_total(
    clock: ManualClock,
) -> None:
    events: list[Event] = []
    app = stack(clock, events)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        reply = await http.get("/hello")
    assert reply.status_code == 200
    found = entries(reply.headers["server-timing"])
    assert [name for name, _ in found] == ["ratelimit", "db_query", "app", "total"]
    assert sum(ms for name, ms in found if name != "total") <= found[-1][1] + 0.002
    (finished,) = [e for e in events if isinstance(e, RequestFinished)]
    assert [name for name, _ in finished.stages] == ["ratelimit", "db query", "app"]


async def test_a_rate_limited_response_carries_the_timing_too(clock: ManualClock) -> None:
    app = stack(clock, [], rate="1/minute")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        await http.get("/hello")
        denied = await http.get("/hello")
    assert denied.status_code == 429
    assert [name for name, _ in entries(denied.headers["server-timing"])] == [
        "ratelimit",
        "app",
        "total",
    ]


async def test_off_by_default() -> None:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(ObservabilityMiddleware(ok))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        reply = await http.get("/")
    assert "server-timing" not in reply.headers
