import asyncio

import pytest

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock, ManualClock


def test_system_clock_is_a_clock() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock)
    assert SYSTEM_CLOCK.monotonic_ns() // 1000 >= 0
    assert SYSTEM_CLOCK.time() > 1_600_000_000


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start=10.0)
    assert clock.monotonic() == 10.0
    assert clock.monotonic_ns() == 10_000_000_000
    clock.advance(2.5)
    assert clock.monotonic() == 12.5
    assert clock.time() == 12.5 + 1_700_000_000.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(1.0)


async def test_advance_releases_sleepers_in_deadline_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 2.0), ("a", 1.0))]
    await asyncio.sleep(0)
    assert clock.pending_sleepers == 2
    clock.advance(1.0)
    await asyncio.sleep(0)
    assert woke == ["a"]
    clock.advance(5.0)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b"]
    await clock.sleep(0)


async def test_a_virtual_clock_moves_by_sleeping() -> None:
    import asyncio

    from sysdesign_kit.clock import VirtualClock

    clock = VirtualClock(start=10.0)
    woken: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append(clock.monotonic())

    await clock.sleep(2.5)
    assert clock.monotonic() == 12.5
    await clock.sleep(0)
    assert clock.monotonic() == 12.5
    await asyncio.gather(sleeper(1.0), sleeper(3.0))
    # Each sleeper moved time on by its own wait before either resumed: concurrent
    # sleepers add up (the documented simplification), and both wake at the end.
    assert clock.monotonic() == 16.5
    assert woken == [16.5, 16.5]
