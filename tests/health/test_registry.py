"""The background runner: intervals, timeouts, criticality, staleness, events, draining."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import pytest

from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import Event, HealthChecked
from sysdesign_kit.health import HealthRegistry, Observation
from tests.health.support import Scripted, settle

Factory = Callable[..., HealthRegistry]


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Factory]:
    made: list[HealthRegistry] = []

    def factory(*checks: Scripted, **options: Any) -> HealthRegistry:
        registry = HealthRegistry(checks, clock=clock, **options)
        made.append(registry)
        return registry

    yield factory
    for registry in made:
        await registry.stop()


async def test_each_check_runs_on_its_own_interval(make: Factory, clock: ManualClock) -> None:
    fast, slow = Scripted("fast", interval=2), Scripted("slow", interval=10)
    registry = make(fast, slow)
    await registry.start()
    assert (fast.calls, slow.calls) == (1, 1)  # a first reading before start returns
    for _ in range(5):
        await settle()
        clock.advance(2)
    await settle()
    assert (fast.calls, slow.calls) == (6, 2)
    assert registry.max_age([fast, slow]) == 2


async def test_max_age_is_the_time_until_the_next_reading(
    make: Factory, clock: ManualClock
) -> None:
    check = Scripted("c", interval=10)
    registry = make(check)
    assert registry.max_age([check]) == 0  # not running: nothing to promise
    await registry.start()
    await settle()
    clock.advance(3.5)
    assert registry.max_age([check]) == 6
    clock.advance(7)  # overdue (the runner has not run yet)
    assert registry.max_age([check]) == 0


async def test_a_timeout_is_a_fail(make: Factory, clock: ManualClock) -> None:
    check = Scripted("slow", "hang", timeout=2)
    registry = make(check)
    pending = asyncio.ensure_future(registry.refresh())
    await settle()
    clock.advance(1.9)
    await settle()
    assert not pending.done()
    clock.advance(0.1)
    readings = await pending
    assert readings["slow"].status == "fail"
    assert readings["slow"].output == "timed out after 2 s"
    assert readings["slow"].duration == pytest.approx(2.0)


async def test_concurrent_refreshes_share_one_probe(make: Factory, clock: ManualClock) -> None:
    check = Scripted("slow", "hang", timeout=1)
    registry = make(check)
    first = asyncio.ensure_future(registry.refresh())
    second = asyncio.ensure_future(registry.refresh("slow"))
    await settle()
    clock.advance(1)
    assert (await first)["slow"] == (await second)["slow"]
    assert check.calls == 1


@pytest.mark.parametrize(
    ("outcome", "critical", "status", "output"),
    [
        (Observation("pass", 3, "ms", "ignored on pass"), True, "pass", None),
        (Observation("warn", output="slowish"), True, "warn", "slowish"),
        (Observation("fail"), True, "fail", "fail"),
        (ConnectionRefusedError(111, "refused"), True, "fail", "ConnectionRefusedError"),
        (ConnectionRefusedError(111, "refused"), False, "warn", "non-critical check failed"),
        (Observation("fail", output="down"), False, "warn", "non-critical check failed: down"),
        (Observation("warn", output="meh"), False, "warn", "meh"),
    ],
)
async def test_outcomes_and_criticality(
    make: Factory, outcome: object, critical: bool, status: str, output: str | None
) -> None:
    registry = make(Scripted("c", outcome, critical=critical))
    reading = (await registry.refresh())["c"]
    assert reading.status == status
    if output is None:
        assert reading.output is None
    else:
        assert reading.output is not None
        assert reading.output.startswith(output)


async def test_stale_readings_degrade_to_warn_then_fail(make: Factory, clock: ManualClock) -> None:
    check = Scripted("c", interval=10, timeout=1)  # stale after 21 s, expired after 41 s
    registry = make(check)
    assert registry.verdict(check)[0] == "fail"  # no reading yet
    await registry.start()
    await registry.stop()  # the runner dies; the last reading stays
    assert registry.verdict(check) == ("pass", None)
    clock.advance(21.5)
    status, output = registry.verdict(check)
    assert status == "warn"
    assert output is not None
    assert output.startswith("stale reading")
    clock.advance(20)
    assert registry.verdict(check)[0] == "fail"


async def test_every_reading_is_published(make: Factory, clock: ManualClock) -> None:
    events: list[Event] = []
    registry = make(
        Scripted("db", Observation("pass", 12, "ms"), measurement="responseTime"),
        Scripted("q", Observation("pass", True, "flag")),
        listeners=[events.append, lambda event: 1 / 0],  # a broken sink changes nothing
    )
    await registry.start()
    await settle()
    clock.advance(10)
    await settle()
    assert events.count(HealthChecked("health", "db:responseTime", "pass", 0.0, 12.0)) == 2
    assert HealthChecked("health", "q:status", "pass", 0.0, None) in events


async def test_registration_rules(make: Factory, clock: ManualClock) -> None:
    registry = make(Scripted("a"))
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.add(Scripted("a", measurement="other"))
    with pytest.raises(ConfigurationError, match="reserved"):
        registry.add(Scripted("draining"))
    with pytest.raises(ConfigurationError, match="not a health Check"):
        registry.add(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="drain_delay"):
        HealthRegistry(drain_delay=-1)
    await registry.start()
    late = registry.add(Scripted("late", interval=5))
    await settle()
    assert isinstance(late, Scripted)
    assert late.calls == 1  # a check added while running starts at once
    assert late.started == 1  # with its start hook, as start() runs the others'
    clock.advance(5)
    await settle()
    assert late.calls == 2
    assert list(registry.checks) == ["a", "late"]
    with pytest.raises(TypeError):
        registry.checks["x"] = late  # type: ignore[index]


async def test_start_and_stop_run_the_hooks_once(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Scripted):
        async def start(self) -> None:
            raise RuntimeError("no start")

        async def aclose(self) -> None:
            raise RuntimeError("no close")

    check, broken = Scripted("c"), Broken("b")
    registry = make(check, broken)
    with caplog.at_level(logging.ERROR, "sysdesign_kit.health"):
        await registry.start()
        await registry.start()
        assert registry.running
        await registry.stop()
        await registry.stop()
    assert (check.started, check.closed, check.calls) == (1, 1, 1)
    assert not registry.running
    assert "b:status failed to start" in caplog.text
    assert "b:status failed to close" in caplog.text


async def test_lifespan_and_context_manager_drain_then_stop(make: Factory) -> None:
    check = Scripted("c")
    registry = make(check)
    async with registry.lifespan(object()):
        assert registry.running
        assert not registry.draining
    assert registry.draining
    assert not registry.running
    assert check.closed == 1
    async with registry as entered:
        assert entered is registry
        assert not registry.draining  # starting again serves again
    assert registry.draining


class _Recorder:
    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)


@pytest.fixture
def recorder() -> Any:
    recorder = _Recorder()
    previous = signal.signal(signal.SIGUSR1, recorder)
    yield recorder
    signal.signal(signal.SIGUSR1, previous)


async def test_a_drain_signal_drains_at_once_and_is_passed_on_later(
    make: Factory, clock: ManualClock, recorder: _Recorder
) -> None:
    registry = make(Scripted("c"), drain_signals=[signal.SIGUSR1], drain_delay=5)
    await registry.start()
    assert signal.getsignal(signal.SIGUSR1) is not recorder
    os.kill(os.getpid(), signal.SIGUSR1)
    await settle()
    assert registry.draining
    assert recorder.received == []  # the server still accepts while balancers notice
    clock.advance(5)
    await settle()
    assert recorder.received == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is recorder  # handed back
    await registry.stop()
    assert signal.getsignal(signal.SIGUSR1) is recorder


async def test_a_second_signal_is_passed_on_at_once(make: Factory, recorder: _Recorder) -> None:
    registry = make(drain_signals=[signal.SIGUSR1], drain_delay=60)
    await registry.start()
    os.kill(os.getpid(), signal.SIGUSR1)
    await settle()
    os.kill(os.getpid(), signal.SIGUSR1)
    await settle()
    assert recorder.received == [signal.SIGUSR1]
    await registry.stop()
    assert signal.getsignal(signal.SIGUSR1) is recorder


async def test_without_a_delay_the_signal_goes_straight_on(
    make: Factory, recorder: _Recorder
) -> None:
    registry = make(drain_signals=[signal.SIGUSR1])
    await registry.start()
    os.kill(os.getpid(), signal.SIGUSR1)
    await settle()
    assert registry.draining
    assert recorder.received == [signal.SIGUSR1]


async def test_an_ignored_signal_stays_ignored(make: Factory) -> None:
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        registry = make(drain_signals=[signal.SIGUSR2])
        await registry.start()
        os.kill(os.getpid(), signal.SIGUSR2)
        await settle()
        assert registry.draining
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, previous)


async def test_signals_need_the_main_thread(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    registry = make(drain_signals=[signal.SIGUSR1])

    async def cycle() -> None:
        await registry.start()
        await registry.stop()

    with caplog.at_level(logging.WARNING, "sysdesign_kit.health"):
        await asyncio.to_thread(asyncio.run, cycle())
    assert "signals need the main thread" in caplog.text
