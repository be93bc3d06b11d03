"""The scripted in-process demo: exact counts on the manual clock, and a truthful report."""

from __future__ import annotations

import socket

import pytest
from starlette.applications import Starlette

from reference_system.demo import run, run_scenarios
from sysdesign_kit.clock import ManualClock


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


@pytest.mark.redis
def test_run_with_redis_counts_the_same(
    capsys: pytest.CaptureFixture[str], redis_url: str, redis_prefix: str
) -> None:
    assert run(serve=False) == 0
    in_memory = capsys.readouterr().out.splitlines()
    assert run(serve=False, redis_url=redis_url, redis_prefix=redis_prefix) == 0
    on_redis = capsys.readouterr().out.splitlines()
    assert on_redis[1].startswith("limiter: token bucket, state in Redis redis")
    assert on_redis[1].endswith(", simulated clock")
    assert on_redis[2:] == in_memory[2:]


def test_run_with_unreachable_redis_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed
    assert run(serve=False, redis_url=f"redis://127.0.0.1:{port}/0") == 1
    assert "error: cannot reach Redis redis://127.0.0.1" in capsys.readouterr().err
