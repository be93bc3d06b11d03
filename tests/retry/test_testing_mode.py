"""Instant retries for users' tests: waits become zero, attempts can be capped."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.retry import Retry, testing
from tests.retry.conftest import Recorder


@pytest.fixture(autouse=True)
def _switch_off() -> Iterator[None]:
    yield
    testing.set_testing(False)


def failing(times: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise ConnectionError
        return "ok"

    return calls, work


def test_instant_makes_waits_zero_on_the_real_clock(events: Recorder) -> None:
    slept: list[float] = []
    policy = Retry(on=ConnectionError, sleep=slept.append, listeners=[events])
    _calls, work = failing(3)
    with testing.instant():
        assert testing.is_testing()
        assert policy.call(work) == "ok"  # type: ignore[arg-type]
    assert not testing.is_testing()
    assert slept == []  # nothing slept at all
    assert [e.delay for e in events.attempted] == [0.0, 0.0, 0.0]


def test_instant_caps_attempts() -> None:
    policy = Retry(on=ConnectionError, attempts=10)
    calls, work = failing(5)
    with testing.instant(attempts=2), pytest.raises(ConnectionError):
        policy.call(work)  # type: ignore[arg-type]
    assert len(calls) == 2


def test_a_cap_above_the_policy_changes_nothing() -> None:
    calls, work = failing(5)
    with testing.instant(attempts=10), pytest.raises(ConnectionError):
        Retry(on=ConnectionError, attempts=3).call(work)  # type: ignore[arg-type]
    assert len(calls) == 3


async def test_instant_async_on_the_system_clock() -> None:
    calls = 0

    @Retry(on=ConnectionError, wait_initial=5.0)
    async def work() -> int:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError
        return calls

    with testing.instant():
        assert await asyncio.wait_for(work(), timeout=5) == 4


def test_nested_holders_and_set_testing() -> None:
    with testing.instant(attempts=3):
        with testing.instant(attempts=2):
            assert testing.state == (True, 2)
        assert testing.state == (True, 3)
        testing.set_testing(True)
        assert testing.state == (True, 3)
    assert testing.state == (True, None)
    testing.set_testing(False)
    assert testing.state == (False, None)
    testing.set_testing(False)  # switching off twice is harmless


def test_threads_enable_and_disable_independently() -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(cap: int) -> None:
        try:
            barrier.wait()
            for _ in range(200):
                with testing.instant(attempts=cap):
                    assert testing.is_testing()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n + 1,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert testing.state == (False, None)


@pytest.mark.parametrize("attempts", [0, -1, True, 1.5])
def test_bad_caps(attempts: object) -> None:
    with pytest.raises(ConfigurationError, match="attempts"):
        testing.set_testing(True, attempts=attempts)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="attempts"), testing.instant(attempts=attempts):  # type: ignore[arg-type]
        pass
