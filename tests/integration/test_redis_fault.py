"""Redis hangs, dies and comes back: limiters degrade by their policy and recover alone.

The test runs its own ``redis-server`` on a free loopback port (never the shared one):
SIGSTOP makes it hang (replies time out), terminating it refuses connections, and starting
it again on the same port brings back a server that has lost every script (NOSCRIPT).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sysdesign_kit.events import BackendFailure, Event
from sysdesign_kit.ratelimit import RateLimitDecision, RateLimiter, hit_all, hit_all_sync
from sysdesign_kit.ratelimit.redis import RedisBackend

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT = 0.1
#: How long a degraded call may take: the timeout, a reconnect attempt, a loaded machine.
PATIENCE = 1.5


class RedisServer:
    """A throwaway redis-server: no persistence, loopback only."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        options = {"port": self.port, "bind": "127.0.0.1", "save": "", "appendonly": "no"}
        arguments = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.process = subprocess.Popen(
            [self.binary, *map(str, arguments), "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH: this test runs its own (scripts/test.sh installs it)"
        )
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


async def decide_everything(
    open_: RateLimiter, closed: RateLimiter, key: str
) -> tuple[list[RateLimitDecision], list[RateLimitDecision], float]:
    """Every way in, on both limiters: the slowest single call's duration too."""
    slowest = 0.0
    opened: list[RateLimitDecision] = []
    shut: list[RateLimitDecision] = []
    calls: list[Callable[[RateLimiter], Any]] = [
        lambda limiter: limiter.hit(key),
        lambda limiter: limiter.peek(key),
        lambda limiter: hit_all([(limiter, key)]),
        lambda limiter: limiter.sync.hit(key),
        lambda limiter: hit_all_sync([(limiter, key)]),
        lambda limiter: asyncio.gather(*(limiter.hit(f"{key}-{i}") for i in range(20))),
    ]
    for limiter, into in ((open_, opened), (closed, shut)):
        for call in calls:
            start = time.monotonic()
            result = call(limiter)
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                result = await result
            slowest = max(slowest, time.monotonic() - start)
            into.extend(result if isinstance(result, list) else [result])
    return opened, shut, slowest


async def test_degrades_by_policy_and_recovers(server: RedisServer) -> None:
    events: list[Event] = []
    backend = RedisBackend.from_url(
        server.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, deny_cache=0
    )
    open_ = RateLimiter("1000/second", backend=backend, name="open", listeners=[events.append])
    closed = RateLimiter(
        "1000/second", backend=backend, name="closed", fail_open=False, listeners=[events.append]
    )
    try:
        opened, shut, _ = await decide_everything(open_, closed, "up")
        assert all(d.allowed and not d.degraded for d in opened + shut)

        phases: list[tuple[str, Callable[[], None]]] = [
            ("hung", lambda: server.signal(signal.SIGSTOP)),
            ("down", server.stop),
        ]
        for phase, act in phases:
            act()
            events.clear()
            opened, shut, slowest = await decide_everything(open_, closed, phase)
            assert all(d.degraded and d.allowed for d in opened), phase
            assert all(d.degraded and not d.allowed and d.retry_us > 0 for d in shut), phase
            assert slowest < PATIENCE, (phase, slowest)
            failures = [e for e in events if isinstance(e, BackendFailure)]
            assert {(e.component, e.outcome) for e in failures} == {
                ("ratelimit:open", "fail_open"),
                ("ratelimit:closed", "fail_closed"),
            }
            assert all(e.backend == "redis" for e in failures)

        # A new server on the same port, with no scripts loaded: decisions resume alone.
        server.start()
        deadline = time.monotonic() + 5
        while True:
            opened, shut, _ = await decide_everything(open_, closed, "back")
            if not any(d.degraded for d in opened + shut) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert all(d.allowed and not d.degraded for d in opened + shut)
        # State is kept again: the same key is counted.
        assert (await open_.hit("again")).remaining == 999
        assert open_.sync.hit("again").remaining == 998
    finally:
        await backend.aclose()


async def test_reset_is_not_silently_dropped(server: RedisServer) -> None:
    from sysdesign_kit.errors import BackendUnavailable

    backend = RedisBackend.from_url(server.url, socket_timeout=TIMEOUT)
    limiter = RateLimiter("5/second", backend=backend)
    try:
        await limiter.hit("k")
        server.stop()
        with pytest.raises(BackendUnavailable):
            await limiter.reset("k")
        with pytest.raises(BackendUnavailable):
            limiter.sync.reset("k")
    finally:
        await backend.aclose()
