"""``sysdesign-kit demo --serve`` as a user runs it: a subprocess answering real HTTP.

Real time and real sockets: the checks send bursts far faster than the limits refill
(anonymous: one request per 3 s), so no test waits for a window.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

PRODUCT = "/api/v1/products/1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    log_dir: Path, *extra: str, stop: signal.Signals = signal.SIGINT
) -> Iterator[httpx.Client]:
    """Start the demo server, yield a client for it once it answers, stop it, expect exit 0."""
    port = _free_port()
    argv = [sys.executable, "-m", "sysdesign_kit.cli", "demo", "--serve", "--port", str(port)]
    # Files, not pipes: a full pipe would block the server's logging.
    out, err = log_dir / "stdout", log_dir / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        server = subprocess.Popen([*argv, *extra], stdout=stdout, stderr=stderr)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, f"server exited early: {err.read_text()}"
                assert time.monotonic() < deadline, f"server never answered: {err.read_text()}"
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)  # still starting up
            yield client
    finally:
        if server.poll() is None:
            server.send_signal(stop)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    assert server.returncode == 0, err.read_text()
    assert "Finished server process" in err.read_text()


def check_health(client: httpx.Client, backend: str) -> None:
    """/live, /ready and /health answer health+json 200, exempt from the limits."""
    for path in ("/live", "/ready", "/health"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/health+json"
        assert "ratelimit" not in response.headers  # exempt
        assert response.json()["status"] in ("pass", "warn")
    health = client.get("/health").json()
    assert f"rate-limit state in {backend}" in health["description"]
    expected = {"eventloop:lag", "disk:freeSpace"} | (
        {"redis:responseTime"} if backend == "redis" else set()
    )
    assert set(health["checks"]) == expected
    assert set(client.get("/live").json()["checks"]) == {"eventloop:lag"}


def check_observability(client: httpx.Client) -> None:
    """Request ids, Server-Timing, and /metrics from the same events."""
    premium = {"X-API-Key": "demo-premium-key"}
    for sent, echoed in [("client-trace-7", True), ("not valid!", False), ("x" * 500, False)]:
        response = client.get(PRODUCT, headers={**premium, "X-Request-ID": sent})
        assert response.status_code == 200
        assert (response.headers["x-request-id"] == sent) is echoed
        assert response.headers["x-request-id"]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "ratelimit" not in metrics.headers  # exempt
    families = {family.name for family in text_string_to_metric_families(metrics.text)}
    assert {"http_server_request_duration_seconds", "ratelimit_decisions"} <= families
    samples = [
        sample
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
    ]
    assert any(
        s.name == "http_server_request_duration_seconds_count"
        and s.labels["route"] == "/api/v1/products/{product_id}"
        and s.labels["status_code"] == "429"
        for s in samples
    )
    assert any(s.name == "ratelimit_decisions_total" and s.value > 0 for s in samples)


def _stages(response: httpx.Response) -> list[str]:
    return [entry.split(";")[0].strip() for entry in response.headers["server-timing"].split(",")]


def check_http_contract(client: httpx.Client, backend: str) -> None:
    """What the README promises about the served demo."""
    check_health(client, backend)

    anonymous = [client.get(PRODUCT) for _ in range(21)]
    first, last = anonymous[0], anonymous[-1]
    assert first.status_code == 200
    assert first.json()["id"] == 1
    assert first.headers["ratelimit-policy"] == '"anonymous";q=20;w=60, "ip";q=500;w=60'
    assert first.headers["ratelimit"].startswith('"anonymous";r=19;t=')
    assert [r.status_code for r in anonymous] == [200] * 20 + [429]
    assert int(last.headers["retry-after"]) >= 1
    assert last.headers["content-type"] == "application/problem+json"
    assert last.json()["status"] == 429
    assert last.json()["violated-policies"] == ["anonymous"]
    for response in (first, last):
        assert response.headers["x-request-id"]
        assert _stages(response) == ["auth", "ratelimit", "app", "total"]
    assert len({r.headers["x-request-id"] for r in anonymous}) == len(anonymous)

    premium = [client.get(PRODUCT, headers={"X-API-Key": "demo-premium-key"}) for _ in range(21)]
    assert [r.status_code for r in premium] == [200] * 21
    # Real time: premium refills one request every 0.06 s while the burst runs.
    remaining = int(premium[-1].headers["ratelimit"].partition(";r=")[2].partition(";")[0])
    assert premium[-1].headers["ratelimit"].startswith('"premium";')
    assert 979 <= remaining < 1000
    check_observability(client)
    check_payments(client)


def check_payments(client: httpx.Client) -> None:
    """Payments through the breaker: charged; an outage opens it; then the fallback."""
    key, admin = {"X-API-Key": "demo-premium-key-2"}, {"X-API-Key": "demo-admin-key"}
    paid = client.post("/api/v1/payments", json={"order_id": 1, "amount": 9.5}, headers=key)
    assert (paid.status_code, paid.json()["status"]) == (201, "captured")
    assert client.get("/api/v1/payments/breaker", headers=key).json()["state"] == "closed"
    # A 500 is not retried (no waiting in real time), but it is a failure for the breaker.
    outage = {"seconds": 60, "status": 500}
    assert client.post("/admin/payments/outage", json=outage, headers=key).status_code == 403
    assert client.post("/admin/payments/outage", json=outage, headers=admin).status_code == 200
    answers = [
        client.post("/api/v1/payments", json={"order_id": i, "amount": 1}, headers=key)
        for i in range(2, 9)
    ]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:4] == [502] * 4  # 1 success + 4 failures: 5 calls, 80% failed
    assert statuses[4:] == [202] * 3  # open: queued at once, no call made
    assert answers[-1].json()["status"] == "queued"
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 30
    breaker = client.get("/api/v1/payments/breaker", headers=key).json()
    assert (breaker["state"], breaker["queued_payments"]) == ("open", 3)
    assert 0 < breaker["retry_after"] <= 30


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_in_memory(tmp_path: Path, stop: signal.Signals) -> None:
    with serving(tmp_path, stop=stop) as client:
        check_http_contract(client, "memory")


def test_port_in_use_fails_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "sysdesign_kit.cli", "demo", "--serve", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode != 0  # uvicorn's startup-failure code
    assert "address already in use" in done.stderr.lower()


@pytest.mark.redis
def test_serve_with_redis(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    import redis

    args = ("--redis", redis_url, "--redis-prefix", redis_prefix)
    with serving(tmp_path, *args, stop=signal.SIGTERM) as client:
        check_http_contract(client, "redis")
    # The state really was in Redis, under the prefix asked for.
    with redis.Redis.from_url(redis_url) as server:
        assert list(server.scan_iter(match=f"{redis_prefix}:rl:*"))


@pytest.mark.redis
def test_two_servers_share_limits_through_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    args = ("--redis", redis_url, "--redis-prefix", redis_prefix)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with serving(tmp_path / "a", *args) as first, serving(tmp_path / "b", *args) as second:
        # Empty the anonymous bucket through the first server (real time: a slow machine
        # may see a token come back, so send until the first 429 rather than exactly 21).
        statuses: list[int] = []
        while not statuses or statuses[-1] == 200:
            statuses.append(first.get(PRODUCT).status_code)
            assert len(statuses) <= 40
        # The second server never saw this client, yet knows its bucket is empty.
        denied = second.get(PRODUCT)
    assert statuses.count(200) >= 20
    assert statuses[-1] == denied.status_code == 429
    assert int(denied.headers["retry-after"]) >= 1
