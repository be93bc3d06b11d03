"""Checks as objects: their options, custom callables, disk space and event-loop lag."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from sysdesign_kit.errors import BackendUnavailable, ConfigurationError
from sysdesign_kit.health import (
    CallableCheck,
    DatabaseCheck,
    DiskSpaceCheck,
    EventLoopLagCheck,
    HttpCheck,
    Observation,
    Reading,
)
from sysdesign_kit.health.checks import describe_error
from sysdesign_kit.health.reading import judge, rfc3339, worst
from tests.health.support import Dependency, Scripted


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "check name"),
        ({"name": "a:b"}, "check name"),
        ({"name": "a/b"}, "check name"),
        ({"name": "x" * 65}, "check name"),
        ({"measurement": "a:b"}, "measurement"),
        ({"measurement": ""}, "measurement"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"interval": -1}, "interval"),
        ({"interval": "10"}, "interval"),
        ({"stale_after": 0}, "stale_after"),
        ({"stale_after": 10, "expire_after": 5}, "expire_after"),
        ({"affected_endpoints": "/users"}, "affected_endpoints"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    name = options.pop("name", "ok")
    with pytest.raises(ConfigurationError, match=message):
        Scripted(name, **options)


def test_defaults_and_key() -> None:
    check = Scripted("cache", measurement="responseTime", component_id="c1")
    assert check.key == "cache:responseTime"
    assert (check.interval, check.timeout) == (10.0, 2.0)
    assert (check.stale_after, check.expire_after) == (22.0, 42.0)
    assert (check.liveness, check.readiness, check.critical) == (False, True, True)
    assert repr(check) == "Scripted('cache:responseTime')"


def test_dependency_checks_are_refused_at_live_unless_forced() -> None:
    with pytest.raises(ConfigurationError, match="force_liveness"):
        Dependency("db", liveness=True)
    assert Dependency("db", liveness=True, force_liveness=True).liveness
    with pytest.raises(ConfigurationError, match="force_liveness"):
        HttpCheck("http://127.0.0.1:1/", liveness=True)
    assert EventLoopLagCheck().liveness  # the one check liveness is for


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HttpCheck("ftp://host/"), "http"),
        (lambda: HttpCheck("http:///path"), "host"),
        (lambda: HttpCheck("http://h/", method="GE T"), "method"),
        (lambda: DatabaseCheck(), "exactly one"),
        (lambda: DatabaseCheck(ping=lambda: asyncio.sleep(0), connect=object), "exactly one"),  # type: ignore[arg-type]
        (lambda: DatabaseCheck(connect=lambda: None, query=" "), "query"),  # type: ignore[arg-type,return-value]
        (lambda: DiskSpaceCheck(min_free_bytes=1, min_free_percent=1), "not both"),
        (lambda: DiskSpaceCheck(min_free_percent=101), "0..100"),
        (lambda: DiskSpaceCheck(min_free_bytes=-1), "min_free_bytes"),
        (lambda: EventLoopLagCheck(warn_after=0), "warn_after"),
        (lambda: EventLoopLagCheck(warn_after=2, fail_after=1), "fail_after"),
        (lambda: CallableCheck("c", 42), "callable"),  # type: ignore[arg-type]
    ],
)
def test_bad_check_arguments(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_http_check_names_itself_after_the_host() -> None:
    assert HttpCheck("https://payments.internal:8443/health").name == "payments.internal"
    assert HttpCheck("http://[::1]:8080/").name == "1"


async def _async_true() -> bool:
    return True


class _AsyncCallable:
    async def __call__(self) -> Observation:
        return Observation("warn", 3, "items", "queue filling")


@pytest.mark.parametrize(
    ("function", "status", "output"),
    [
        (lambda: None, "pass", None),
        (lambda: True, "pass", None),
        (lambda: False, "fail", "the check returned False"),
        (lambda: 3, "fail", "expected None, a bool or an Observation"),
        (lambda: Observation("warn", output="meh"), "warn", "meh"),
        (_async_true, "pass", None),
        (_AsyncCallable(), "warn", "queue filling"),
        (lambda: _async_true(), "pass", None),  # a plain function returning an awaitable
    ],
)
@pytest.mark.parametrize("in_thread", [True, False])
async def test_callable_check_answers(
    function: Any, status: str, output: str | None, in_thread: bool
) -> None:
    observation = await CallableCheck("custom", function, in_thread=in_thread).probe()
    assert observation.status == status
    assert output is None or output in (observation.output or "")


async def test_sync_callables_run_off_the_loop() -> None:
    import threading

    seen: list[str] = []
    check = CallableCheck("where", lambda: seen.append(threading.current_thread().name))
    await check.probe()
    assert seen == ["health-where"]


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (TimeoutError(), "TimeoutError"),
        (OSError("boom\n  twice"), "OSError: boom twice"),
        (BackendUnavailable("redis PING failed"), "redis PING failed"),
        (ValueError("x" * 900), "ValueError: " + "x" * 487 + "…"),
    ],
)
def test_errors_are_one_bounded_line(exc: Exception, text: str) -> None:
    assert describe_error(exc) == text


async def test_disk_space_against_the_real_filesystem(tmp_path: Path) -> None:
    roomy = await DiskSpaceCheck(tmp_path, min_free_bytes=1).probe()
    assert roomy.status == "pass"
    assert roomy.observed_unit == "bytes"
    assert isinstance(roomy.observed_value, int)
    assert roomy.observed_value > 0

    full = await DiskSpaceCheck(tmp_path, min_free_bytes=2**62).probe()
    assert full.status == "fail"
    assert "below the 4.0 EiB minimum" not in (full.output or "")  # sizes stop at PiB
    assert "below the" in (full.output or "")

    percent = await DiskSpaceCheck(tmp_path).probe()  # 10 % by default
    assert percent.observed_unit == "percent"
    assert isinstance(percent.observed_value, float)
    assert 0 <= percent.observed_value <= 100
    assert (await DiskSpaceCheck(tmp_path, min_free_percent=100).probe()).status == "fail"


async def test_disk_space_on_a_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await DiskSpaceCheck(tmp_path / "gone").probe()


@pytest.mark.slow
async def test_event_loop_lag_sees_a_blocked_loop() -> None:
    check = EventLoopLagCheck(warn_after=0.02, fail_after=0.08, sample_every=0.005)
    await check.start()
    try:
        await asyncio.sleep(0.02)
        calm = await check.probe()
        assert calm.observed_unit == "ms"
        time.sleep(0.1)  # noqa: ASYNC251 - the point: block the loop as bad code would
        await asyncio.sleep(0.01)  # the late heartbeat runs and records the lag
        blocked = await check.probe()
        assert blocked.status == "fail", blocked
        assert isinstance(blocked.observed_value, float)
        assert blocked.observed_value >= 80
        assert "event loop lagged" in (blocked.output or "")
        # The worst lag is reported once, then forgotten.
        await asyncio.sleep(0.01)
        assert (await check.probe()).observed_value != blocked.observed_value
    finally:
        await check.aclose()


async def test_event_loop_lag_starts_itself_when_probed() -> None:
    check = EventLoopLagCheck()
    try:
        assert (await check.probe()).status == "pass"
    finally:
        await check.aclose()
    await check.aclose()  # twice is fine


def _reading(status: Any = "pass", taken: float = 100.0) -> Reading:
    return Reading(status, time=1.7e9, taken=taken, duration=0.0, output=None)


@pytest.mark.parametrize(
    ("reading", "now", "expected"),
    [
        (None, 100.0, "fail"),
        (_reading("pass"), 110.0, "pass"),
        (_reading("pass"), 120.5, "warn"),
        (_reading("warn"), 120.5, "warn"),
        (_reading("fail"), 120.5, "fail"),
        (_reading("pass"), 140.5, "fail"),
        (_reading("warn"), 140.5, "fail"),
    ],
)
def test_stale_readings_degrade(reading: Reading | None, now: float, expected: str) -> None:
    status, output = judge(reading, now, stale_after=20, expire_after=40)
    assert status == expected
    if reading is None:
        assert output is not None
        assert "no reading yet" in output
    elif now > 120 and reading.status != "fail":
        assert output is not None
        assert "stale reading" in output


def test_worst_and_rfc3339() -> None:
    assert worst([]) == "pass"
    assert worst(["pass", "warn"]) == "warn"
    assert worst(["warn", "fail", "pass"]) == "fail"
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    with pytest.raises(ValueError, match="not a time"):
        rfc3339(float("inf"))
    with pytest.raises(ValueError, match="status"):
        Observation("ok")  # type: ignore[arg-type]
