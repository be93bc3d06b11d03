"""Two real processes share one breaker through Redis (its TIME, real clocks): one trips it,
the other refuses within the flush interval; after the open time exactly ``half_open_calls``
trials are admitted across both, and both close when they pass."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from sysdesign_kit.breaker import CircuitBreaker, Permit, State
from sysdesign_kit.breaker.redis import RedisBreakerState
from sysdesign_kit.errors import CircuitOpen

pytestmark = [pytest.mark.redis, pytest.mark.slow]

FLUSH = 0.1
OPEN_FOR = 1.0
TRIALS = 3
#: Scheduling and round trips on a loaded machine, on top of the flush interval.
SLACK = 0.3


def ok() -> str:
    return "ok"


def boom() -> str:
    raise ConnectionError("down")


def watch(state: RedisBreakerState, breaker: CircuitBreaker, seconds: float) -> float:
    """Call every 2 ms until refused; the time of the first refusal."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            breaker.call(ok)
        except CircuitOpen:
            return time.monotonic()
        time.sleep(0.002)
    raise AssertionError("never refused")


def trip(state: RedisBreakerState, breaker: CircuitBreaker) -> float:
    """Fail until this process's window trips; the time it did."""
    while breaker.state is State.CLOSED:
        with contextlib.suppress(ConnectionError):
            breaker.call(boom)
    tripped = time.monotonic()
    state.drain()
    return tripped


def trials(state: RedisBreakerState, breaker: CircuitBreaker, until: float) -> list[str]:
    """Four threads try for permits until ``until`` and hold what they get; then all pass."""
    held: list[Permit] = []

    def grab() -> None:
        while time.monotonic() < until:
            try:
                held.append(breaker.acquire())
            except CircuitOpen:
                time.sleep(0.003)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for permit in held:
        breaker.on_success(permit)
    state.drain()
    return [type(permit).__name__ for permit in held]


def closes(state: RedisBreakerState, breaker: CircuitBreaker, seconds: float) -> str:
    """Call until a call passes with the breaker closed; its state then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            breaker.call(ok)
        except CircuitOpen:
            time.sleep(0.01)
            continue
        if breaker.state is State.CLOSED:
            return breaker.state.value
    return breaker.state.value


COMMANDS: dict[str, Callable[..., Any]] = {
    "ok": lambda state, breaker: breaker.call(ok),
    "watch": watch,
    "trip": trip,
    "trials": trials,
    "closes": closes,
}


def serve(conn: Connection, url: str, prefix: str) -> None:
    state = RedisBreakerState.from_url(url, prefix=prefix, flush_interval=FLUSH)
    breaker = CircuitBreaker(
        "dep", shared=state, minimum_calls=5, open_for=OPEN_FOR, half_open_calls=TRIALS
    )
    try:
        while True:
            command, *args = conn.recv()
            if command == "stop":
                return
            try:
                conn.send(("ok", COMMANDS[command](state, breaker, *args)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        state.close()
        conn.close()


class Worker:
    def __init__(self, url: str, prefix: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=serve, args=(theirs, url, prefix), daemon=True)
        self.process.start()
        theirs.close()

    def send(self, *command: Any) -> None:
        self.conn.send(command)

    def result(self, timeout: float = 30.0) -> Any:
        assert self.conn.poll(timeout), "worker did not answer"
        status, value = self.conn.recv()
        assert status == "ok", value
        return value

    def __call__(self, *command: Any) -> Any:
        self.send(*command)
        return self.result()

    def stop(self) -> None:
        if self.process.is_alive():
            self.conn.send(("stop",))
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


@pytest.fixture
def workers(redis_url: str, redis_prefix: str) -> Iterator[tuple[Worker, Worker]]:
    a, b = Worker(redis_url, redis_prefix), Worker(redis_url, redis_prefix)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_two_processes_share_one_breaker(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    assert a("ok") == b("ok") == "ok"  # both have met the shared state

    b.send("watch", 5.0)  # b keeps calling...
    tripped = a("trip")  # ...while a trips the breaker
    refused = b.result()
    assert 0 <= refused - tripped < FLUSH + SLACK, refused - tripped

    until = time.monotonic() + OPEN_FOR + 1.0  # the open time ends inside this
    a.send("trials", until)
    b.send("trials", until)
    admitted = a.result() + b.result()
    assert admitted == ["_SharedTrial"] * TRIALS  # exactly, across both, and nothing else

    a.send("closes", 5.0)
    b.send("closes", 5.0)
    assert a.result() == b.result() == "closed"
