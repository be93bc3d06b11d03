"""Multiprocess mode for real: two worker processes write into PROMETHEUS_MULTIPROC_DIR and
one scrape of metrics_app() sees the sum; a dead worker's live gauges leave it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.multiprocess import mark_process_dead

from tests.observability.test_prometheus import samples, scrape, value

pytestmark = pytest.mark.slow

WORKER = """
import sys
from sysdesign_kit.events import (
    BreakerTransitioned, HealthChecked, RateLimitDecided, RequestFinished, RequestStarted,
)
from sysdesign_kit.observability import PrometheusSink

n = int(sys.argv[1])
sink = PrometheusSink()
for _ in range(n):
    sink(RequestStarted(component="http", method="GET", route="/items/{id}", request_id="r"))
for _ in range(n - 1):  # one request stays in flight
    sink(RequestFinished(component="http", method="GET", route="/items/{id}", request_id="r",
                         status=200, duration=0.02))
sink(RateLimitDecided(component="rl", policy="api", key="k", allowed=True, limit=5,
                      remaining=4, retry_after=0.0, cost=1))
sink(BreakerTransitioned(component="b", name="pay", previous="closed", state="open"))
sink(HealthChecked(component="h", check="redis:ping", status="pass", duration=0.01,
                   observed_value=float(n)))
print("ready", flush=True)
sys.stdin.readline()
"""

REQUEST = {"method": "GET", "route": "/items/{id}", "status_code": "200"}


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def workers(multiproc_dir: Path) -> Iterator[list[subprocess.Popen[str]]]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    started: list[subprocess.Popen[str]] = []
    try:
        # One after the other, so the most recent health reading is the second worker's.
        for requests in (3, 5):
            worker = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(requests)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            started.append(worker)
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n"
        yield started
    finally:
        for worker in started:
            if worker.poll() is None:
                worker.kill()
            worker.wait(timeout=10)
            for stream in (worker.stdin, worker.stdout):
                if stream is not None:
                    stream.close()


def stop(worker: subprocess.Popen[str]) -> None:
    assert worker.stdin is not None
    worker.stdin.close()
    assert worker.wait(timeout=10) == 0


async def test_one_scrape_sums_two_workers(
    multiproc_dir: Path, workers: list[subprocess.Popen[str]]
) -> None:
    families = await scrape()  # no registry: metrics_app aggregates the directory
    assert value(families, "http_server_request_duration_seconds_count", **REQUEST) == 2 + 4
    bucket = {**REQUEST, "le": "0.025"}
    assert value(families, "http_server_request_duration_seconds_bucket", **bucket) == 6
    assert value(families, "ratelimit_decisions_total", policy="api", outcome="allowed") == 2
    assert value(families, "http_server_active_requests", method="GET") == 2
    assert value(families, "circuit_breaker_state", name="pay", state="open") == 2
    assert value(families, "circuit_breaker_state", name="pay", state="closed") == 0
    assert value(families, "health_check_observed_value", check="redis:ping") == 5
    assert value(families, "health_check_status", check="redis:ping") == 1
    assert not [s for s in samples(families, "http_server_active_requests") if "pid" in s.labels]

    first = workers[0]
    stop(first)
    mark_process_dead(first.pid, str(multiproc_dir))  # type: ignore[no-untyped-call]
    families = await scrape()
    # Live gauges forget the dead worker; counters keep what it counted.
    assert value(families, "http_server_active_requests", method="GET") == 1
    assert value(families, "circuit_breaker_state", name="pay", state="open") == 1
    assert value(families, "http_server_request_duration_seconds_count", **REQUEST) == 6
