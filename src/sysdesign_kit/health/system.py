"""Checks on this process and its machine: event-loop lag and free disk space."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from typing import Unpack

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.health._threads import Worker
from sysdesign_kit.health.checks import Check, CheckOptions
from sysdesign_kit.health.reading import Observation, Status

__all__ = ["DiskSpaceCheck", "EventLoopLagCheck"]


class EventLoopLagCheck(Check):
    """How late the event loop runs a periodic callback: what liveness should detect.

    A heartbeat is scheduled every ``sample_every`` seconds; how much later than asked it
    runs is the time the loop spent blocked (a synchronous call, a CPU-bound handler). A
    reading reports the worst lag since the previous reading, so a stall between two
    readings is not missed. It is at ``/live`` (and ``/ready``) by default.

    Lag is measured on the loop's own clock, not on the injected `Clock`: it is a fact
    about the real loop, which a manual clock cannot observe.

    Args:
        name: the check's name (``eventloop`` by default).
        warn_after: lag (seconds) from which the check reports ``warn``.
        fail_after: lag from which it reports ``fail``.
        sample_every: seconds between heartbeats.
        **options: see `Check`.
    """

    default_measurement = "lag"
    default_component_type = "system"
    default_liveness = True

    def __init__(
        self,
        name: str = "eventloop",
        *,
        warn_after: float = 0.1,
        fail_after: float = 1.0,
        sample_every: float = 0.5,
        **options: Unpack[CheckOptions],
    ) -> None:
        super().__init__(name, **options)
        for option, value in (
            ("warn_after", warn_after),
            ("fail_after", fail_after),
            ("sample_every", sample_every),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"check {name!r}: {option} must be > 0, got {value!r}")
        if fail_after < warn_after:
            raise ConfigurationError(
                f"check {name!r}: fail_after ({fail_after}) must not be below warn_after "
                f"({warn_after})"
            )
        self.warn_after = float(warn_after)
        self.fail_after = float(fail_after)
        self.sample_every = float(sample_every)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._worst = 0.0

    async def start(self) -> None:
        """Start the heartbeat on the running loop."""
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._schedule(self._loop.time())

    async def aclose(self) -> None:
        """Stop the heartbeat."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._expected = now + self.sample_every
        self._handle = self._loop.call_at(self._expected, self._beat)

    def _beat(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._worst = max(self._worst, now - self._expected)
        self._schedule(now)

    async def probe(self) -> Observation:
        """The worst lag since the previous reading, in milliseconds."""
        if self._handle is None:
            await self.start()
        assert self._loop is not None
        # A heartbeat overdue right now counts too: the loop may be stalling as we speak.
        lag = max(self._worst, self._loop.time() - self._expected, 0.0)
        self._worst = 0.0
        value = round(lag * 1000, 3)
        status: Status
        if lag >= self.fail_after:
            status = "fail"
        elif lag >= self.warn_after:
            status = "warn"
        else:
            return Observation("pass", value, "ms")
        limit = self.fail_after if status == "fail" else self.warn_after
        return Observation(
            status, value, "ms", f"event loop lagged {value:g} ms (limit {limit * 1000:g} ms)"
        )


class DiskSpaceCheck(Check):
    """Free space on the filesystem holding ``path``.

    Give the minimum as bytes or as a percentage of the filesystem (10 % if neither);
    the reading's ``observedValue`` is the free space in the same unit (``bytes`` or
    ``percent``). Space as seen by an unprivileged user (``statvfs`` ``f_bavail``), not
    counting blocks reserved for root.

    Args:
        path: any path on the filesystem to watch.
        name: the check's name (``disk`` by default).
        min_free_bytes: fail below this many free bytes.
        min_free_percent: fail below this share of the filesystem free (0-100).
        **options: see `Check`.
    """

    default_measurement = "freeSpace"
    default_component_type = "system"

    def __init__(
        self,
        path: str | os.PathLike[str] = ".",
        *,
        name: str = "disk",
        min_free_bytes: int | None = None,
        min_free_percent: float | None = None,
        **options: Unpack[CheckOptions],
    ) -> None:
        super().__init__(name, **options)
        if min_free_bytes is not None and min_free_percent is not None:
            raise ConfigurationError(
                f"check {name!r}: give min_free_bytes or min_free_percent, not both"
            )
        if min_free_bytes is not None and (
            isinstance(min_free_bytes, bool)
            or not isinstance(min_free_bytes, int)
            or min_free_bytes < 0
        ):
            raise ConfigurationError(
                f"check {name!r}: min_free_bytes must be an int >= 0, got {min_free_bytes!r}"
            )
        if min_free_percent is not None and (
            isinstance(min_free_percent, bool)
            or not isinstance(min_free_percent, int | float)
            or not 0 <= min_free_percent <= 100
        ):
            raise ConfigurationError(
                f"check {name!r}: min_free_percent must be a number in 0..100, "
                f"got {min_free_percent!r}"
            )
        self.path = os.fspath(path)
        self.min_free_bytes = min_free_bytes
        self.min_free_percent = (
            float(min_free_percent)
            if min_free_percent is not None
            else (10.0 if min_free_bytes is None else None)
        )
        # statvfs can hang on a dead network mount: keep it off the loop.
        self._worker = Worker(name)

    async def probe(self) -> Observation:
        """Read the filesystem's usage and compare it with the minimum."""
        usage = await self._worker.run(lambda: shutil.disk_usage(self.path))
        percent = 100.0 * usage.free / usage.total if usage.total else 0.0
        if self.min_free_percent is not None:
            value: float = round(percent, 2)
            unit, low = "percent", value < self.min_free_percent
            limit = f"{self.min_free_percent:g} %"
        else:
            assert self.min_free_bytes is not None
            value, unit = usage.free, "bytes"
            low = usage.free < self.min_free_bytes
            limit = _size(self.min_free_bytes)
        if not low:
            return Observation("pass", value, unit)
        return Observation(
            "fail",
            value,
            unit,
            f"{_size(usage.free)} free ({percent:.1f} % of {_size(usage.total)}) at "
            f"{self.path}, below the {limit} minimum",
        )


def _size(count: int) -> str:
    """Bytes for people: ``1.5 GiB``."""
    if count < 1024:
        return f"{count} B"
    exponent = min(int(math.log(count, 1024)), 5)
    return f"{count / 1024**exponent:.1f} {'BKMGTP'[exponent]}iB"
