"""Helpers for the shared-state tests (no tests here): "processes" (a state object and a breaker
each) on a real Redis and a shared manual clock, round-trip counting, settling workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sysdesign_kit.breaker import CircuitBreaker, State
from sysdesign_kit.breaker.redis import RedisBreakerState
from sysdesign_kit.breaker.redis_rules import SharedView
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.events import Event

Process = tuple[RedisBreakerState, CircuitBreaker]
Maker = Callable[..., Process]


class Boom(Exception):
    pass


def ok() -> str:
    return "ok"


def boom() -> str:
    raise Boom("down")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(boom)


def trip(breaker: CircuitBreaker) -> None:
    """Fail calls until the breaker's own window trips it."""
    for _ in range(100):
        if breaker.state is not State.CLOSED:
            return
        fail(breaker)
    raise AssertionError("the breaker never tripped")


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(ok) == "ok"


def counted(state: RedisBreakerState) -> list[str]:
    """Record the operation of every script call ``state`` makes (the real call still runs)."""
    seen: list[str] = []
    real = state.call

    def call(key: bytes, op: str, *args: Any) -> SharedView:
        seen.append(op)
        return real(key, op, *args)

    state.call = call  # type: ignore[method-assign]
    return seen


def settle(*states: RedisBreakerState) -> None:
    """Wait for every background job of these states (twice: jobs may start jobs)."""
    for _ in range(2):
        for state in states:
            state.drain()


def processes(
    url: str, prefix: str, clock: ManualClock, events: list[Event] | None = None
) -> Iterator[Maker]:
    """A maker of (state, breaker) pairs named ``dep`` by default, closed afterwards."""
    made: list[RedisBreakerState] = []

    def make(name: str = "dep", *, state_options: dict[str, Any] | None = None, **settings: Any):
        state = RedisBreakerState.from_url(
            url, prefix=prefix, server_time=False, clock=clock, **(state_options or {})
        )
        made.append(state)
        settings.setdefault("minimum_calls", 4)
        if events is not None:
            settings.setdefault("listeners", [events.append])
        return state, CircuitBreaker(name, shared=state, clock=clock, **settings)

    yield make
    for state in made:
        state.close()
