"""The scripted in-process demo: exact counts on the manual clock, and a truthful report."""

from __future__ import annotations

import re
import socket

import pytest
from starlette.applications import Starlette

from reference_system.demo import run, run_scenarios
from reference_system.timings import RequestLog, format_timings, percentile
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.events import RequestFinished


async def test_scenarios_cross_the_anonymous_tier_and_per_ip_limits(
    app: Starlette, clock: ManualClock
) -> None:
    tallies, first_429 = await run_scenarios(app, clock=clock)
    rows = [
        (t.requests, t.allowed, t.limited, sorted(set(t.retry_after)), dict(t.denied_by))
        for t in tallies
    ]
    assert rows == [
        (30, 30, 0, [], {}),  # /health is exempt
        (25, 20, 5, [3], {"anonymous": 5}),  # anonymous 20/min
        (1, 1, 0, [], {}),  # after waiting Retry-After
        (105, 100, 5, [1], {"free": 5}),  # free 100/min
        (600, 500, 100, [1], {"ip": 100}),  # 4 accounts, one address: 500/min per IP
        (20, 20, 0, [], {}),  # the same premium account from elsewhere
        (3, 3, 0, [], {}),  # 401, 404, 422 pass the limiter
    ]
    assert dict(tallies[-1].statuses) == {401: 1, 404: 1, 422: 1}
    assert first_429 is not None
    assert first_429.headers["retry-after"] == "3"


def test_run_prints_the_report_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(serve=False, host="127.0.0.1", port=8000, redis_url=None) == 0
    out = capsys.readouterr().out
    assert "state in memory, simulated clock" in out
    assert "limits: anonymous 20/minute, free 100/minute, premium 1000/minute, ip 500/minute" in out
    total = next(line for line in out.splitlines() if line.strip().startswith("total"))
    assert total.split() == ["total", "784", "674", "110", "1-3", "s"]
    assert "429s by policy: anonymous x5" in out
    assert "429s by policy: ip x100" in out
    assert "retry-after: 3" in out
    timing = r"^  server-timing: auth;dur=[0-9.]+, ratelimit;dur=[0-9.]+, app;dur="
    assert re.search(timing, out, re.M)
    assert re.search(
        r"^latency over 784 requests \(in-process, real time\): "
        r"p50 [0-9.]+ ms, p95 [0-9.]+ ms, p99 [0-9.]+ ms$",
        out,
        re.M,
    )
    assert "error rate: 0.0% (5xx: 0; 4xx incl. 429s, the callers' errors: 113)" in out
    timeline = out.partition("one request's timeline (")[2].splitlines()
    assert timeline[0].startswith("GET /api/v1/products/{product_id} -> 200, X-Request-ID ")
    assert [line.split()[0] for line in timeline[1:5]] == ["auth", "ratelimit", "app", "total"]
    payments = out.partition("payments through AsyncResilientTransport")[2]
    assert (
        "opens at 50% failures over the last 10 calls (at least 5), open 30 s, 3 trial" in payments
    )
    for seen in (
        "201 x3",
        "202 x4",
        "attempt 1 failed (HTTP 503); retry in ",
        "(full jitter under 2 s)",
        "breaker closed -> open",
        "breaker rejects a call: fails fast",
        "retrying stops after 4 attempts: breaker_open",
        "breaker open -> half_open",
        "breaker half_open -> open",
        "breaker half_open -> closed",
        "; now closed",
    ):
        assert seen in payments, seen


@pytest.mark.parametrize(
    ("durations", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([4.0, 3.0, 2.0, 1.0], 95, 4.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 50, 50.0),
    ],
)
def test_percentile_is_nearest_rank(durations: list[float], q: int, expected: float) -> None:
    assert percentile(durations, q) == expected


def test_timings_read_request_events() -> None:
    log = RequestLog()
    log(RequestFinished("http", "GET", "/x", "a", 200, 0.002, (("ratelimit", 0.0005),)))
    log(RequestFinished("http", "GET", "/x", "b", 503, 0.004, (), "503"))
    lines = format_timings(log.finished, route="/x")
    assert lines[0].endswith("p50 2.000 ms, p95 4.000 ms, p99 4.000 ms")
    assert lines[1].startswith("error rate: 50.0% (5xx: 1;")
    assert lines[3] == "one request's timeline (GET /x -> 200, X-Request-ID a):"
    assert format_timings([], route="/x") == ["no requests were observed"]


@pytest.mark.redis
def test_run_with_redis_counts_the_same(
    capsys: pytest.CaptureFixture[str], redis_url: str, redis_prefix: str
) -> None:
    assert run(serve=False) == 0
    in_memory = capsys.readouterr().out.splitlines()
    # A generous reply timeout: one stall of the shared machine past the default 0.25 s
    # would fail open the decisions batched behind it, and the counts would differ.
    patient = redis_url + ("&" if "?" in redis_url else "?") + "socket_timeout=2"
    assert run(serve=False, redis_url=patient, redis_prefix=redis_prefix) == 0
    on_redis = capsys.readouterr().out.splitlines()
    assert on_redis[1].startswith("limiter: token bucket, state in Redis redis")
    assert on_redis[1].endswith(", simulated clock")
    assert _counts(on_redis[2:]) == _counts(in_memory[2:])


def _counts(lines: list[str]) -> list[str]:
    """The report without what differs from run to run: request ids and timings."""
    return [line for line in lines if not re.search(r"request-id| ms\b|timing", line, re.I)]


def test_run_with_unreachable_redis_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    assert run(serve=False, redis_url=f"redis://127.0.0.1:{port}/0") == 1
    assert "error: cannot reach Redis redis://127.0.0.1" in capsys.readouterr().err
