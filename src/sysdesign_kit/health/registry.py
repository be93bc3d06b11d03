"""`HealthRegistry`: runs every check in the background and keeps its latest reading.

Probes never reach a dependency: each check runs on its own interval in a background task,
bounded by its timeout, and the endpoints read the cached readings. A thousand probes a
second cost the database nothing, and a slow dependency cannot make a probe slow.

Shutdown has two steps. `HealthRegistry.drain` flips ``/ready`` to fail at once, so load
balancers stop sending traffic while the server still accepts it; `stop` then ends the
background work. The lifespan helpers do both; with ``drain_signals`` the registry also
drains on SIGTERM itself and passes the signal on to the server ``drain_delay`` seconds
later (see `SignalDrain`: servers stop accepting connections as soon as they see SIGTERM,
before any lifespan shutdown runs).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeVar

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import HealthChecked, Listener, Publisher
from sysdesign_kit.health.body import ServiceInfo
from sysdesign_kit.health.checks import Check, describe_error
from sysdesign_kit.health.reading import Observation, Reading, Status, clip, judge
from sysdesign_kit.health.signals import SignalDrain

__all__ = ["Endpoint", "HealthRegistry"]

Endpoint = Literal["live", "ready", "health"]
T = TypeVar("T")

_log = logging.getLogger("sysdesign_kit.health")


class _TimedOut(Exception):
    """The probe outlived its timeout (distinct from a TimeoutError the probe raised)."""


class HealthRegistry:
    """The checks of one service, their background runner and their cached readings.

    Args:
        checks: the checks; more can be added with `add`.
        clock: time source for intervals, timeouts and staleness.
        listeners: receive a `HealthChecked` event per reading (a Prometheus gauge per
            check, for instance); process-wide listeners (``events.subscribe``) too.
        version, release_id, service_id, description: the service's own fields in the
            health+json document.
        drain_signals: signals (e.g. ``[signal.SIGTERM]``) that make the registry drain
            and then pass the signal on to whoever handled it before; installed by
            `start`, removed by `stop` (main thread only).
        drain_delay: seconds between draining on such a signal and passing it on: long
            enough for load balancers to see ``/ready`` fail (a few probe periods).
    """

    def __init__(
        self,
        checks: Iterable[Check] = (),
        *,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
        version: str | None = None,
        release_id: str | None = None,
        service_id: str | None = None,
        description: str | None = None,
        drain_signals: Iterable[int] = (),
        drain_delay: float = 0.0,
    ) -> None:
        if (
            isinstance(drain_delay, bool)
            or not isinstance(drain_delay, int | float)
            or not math.isfinite(drain_delay)
            or drain_delay < 0
        ):
            raise ConfigurationError(f"drain_delay must be seconds >= 0, got {drain_delay!r}")
        self.clock = clock
        self.events = Publisher(listeners)
        self.info = ServiceInfo(version, release_id, service_id, description)
        self._signals = SignalDrain(self.drain, drain_signals, float(drain_delay), clock)
        self._checks: dict[str, Check] = {}
        self._readings: dict[str, Reading] = {}
        self._due: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[Reading]] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        for check in checks:
            self.add(check)

    # -- the checks -------------------------------------------------------------------

    def add(self, check: Check) -> Check:
        """Register ``check`` (its name and key must be new); returns it.

        Raises:
            ConfigurationError: not a `Check`, a name or key already taken, or the name
                ``draining`` (the verbose listing's line for shutdown).
        """
        if not isinstance(check, Check):
            raise ConfigurationError(f"not a health Check: {check!r}")
        if check.name == "draining":
            raise ConfigurationError("the check name 'draining' is reserved for shutdown")
        for other in self._checks.values():
            if check.name == other.name or check.key == other.key:
                raise ConfigurationError(f"a check named {check.name!r} is already registered")
        self._checks[check.name] = check
        if self._loop is not None:
            self._loops[check.name] = self._loop.create_task(self._repeat(check, first=True))
        return check

    @property
    def checks(self) -> Mapping[str, Check]:
        """The checks by name (read-only)."""
        return MappingProxyType(self._checks)

    def select(self, endpoint: Endpoint) -> list[Check]:
        """The checks shown at ``endpoint``, in registration order."""
        if endpoint == "live":
            return [check for check in self._checks.values() if check.liveness]
        if endpoint == "ready":
            return [check for check in self._checks.values() if check.readiness]
        return list(self._checks.values())

    def reading(self, name: str) -> Reading | None:
        """The latest reading of check ``name``, as recorded (not judged for age)."""
        return self._readings.get(name)

    def verdict(self, check: Check) -> tuple[Status, str | None]:
        """What ``check``'s latest reading stands for now, staleness applied."""
        return judge(
            self._readings.get(check.name),
            self.clock.monotonic(),
            stale_after=check.stale_after,
            expire_after=check.expire_after,
        )

    def max_age(self, checks: Iterable[Check]) -> int:
        """Whole seconds until the first of ``checks`` is due for a new reading."""
        now = self.clock.monotonic()
        dues = [self._due[check.name] for check in checks if check.name in self._due]
        if not dues or self._loop is None:
            return 0
        return max(0, math.floor(min(dues) - now))

    # -- draining ---------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """Whether the service is shutting down (``/ready`` fails)."""
        return self._draining

    def drain(self) -> None:
        """Make ``/ready`` fail from now on: the service is about to stop."""
        if not self._draining:
            _log.info("health: draining, /ready now fails")
        self._draining = True

    # -- running ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background runner is started."""
        return self._loop is not None

    async def refresh(self, *names: str) -> dict[str, Reading]:
        """Run the named checks (all by default) now, concurrently; their new readings.

        A check already running is not started twice: its current run is awaited.

        Raises:
            KeyError: an unknown name.
        """
        checks = [self._checks[name] for name in names] if names else list(self._checks.values())
        readings = await asyncio.gather(*(self._run(check) for check in checks))
        return {check.name: reading for check, reading in zip(checks, readings, strict=True)}

    async def start(self) -> None:
        """Start every check, take a first reading of each, then run them in the background.

        Waiting for the first round (at most the longest timeout) means ``/ready`` answers
        from real readings from the first request on.
        """
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._draining = False
        for check in list(self._checks.values()):
            try:
                await check.start()
            except Exception:
                _log.exception("health check %s failed to start", check.key)
        await self.refresh()
        for check in self._checks.values():
            if check.name not in self._loops:
                self._loops[check.name] = self._loop.create_task(self._repeat(check))
        self._signals.install()

    async def stop(self) -> None:
        """Stop the background runner and close every check's resources."""
        if self._loop is None:
            return
        await self._signals.uninstall()
        tasks = [*self._loops.values(), *self._inflight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops.clear()
        self._due.clear()
        self._loop = None
        for check in self._checks.values():
            try:
                await check.aclose()
            except Exception:
                _log.exception("health check %s failed to close", check.key)

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """A lifespan for Starlette/FastAPI: ``Starlette(lifespan=registry.lifespan)``.

        Starts the runner; on shutdown drains, then stops it.
        """
        await self.start()
        try:
            yield
        finally:
            self.drain()
            await self.stop()

    async def __aenter__(self) -> HealthRegistry:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.drain()
        await self.stop()

    async def _repeat(self, check: Check, *, first: bool = False) -> None:
        if first:
            # Added to a running registry: start it as start() starts the others.
            try:
                await check.start()
            except Exception:
                _log.exception("health check %s failed to start", check.key)
            await self._run(check)
        while True:
            await self.clock.sleep(check.interval)
            await self._run(check)

    async def _run(self, check: Check) -> Reading:
        task = self._inflight.get(check.name)
        if task is None:
            task = asyncio.ensure_future(self._measure(check))
            self._inflight[check.name] = task
            task.add_done_callback(lambda _: self._inflight.pop(check.name, None))
        # Shielded: one caller giving up (a cancelled refresh) must not cancel the run
        # that other callers share; stop() cancels runs itself.
        return await asyncio.shield(task)

    async def _measure(self, check: Check) -> Reading:
        clock = self.clock
        started = clock.monotonic()
        try:
            observation = await _within(check.probe(), check.timeout, clock)
        except _TimedOut:
            observation = Observation("fail", output=f"timed out after {check.timeout:g} s")
        except Exception as exc:
            observation = Observation("fail", output=describe_error(exc))
        finished = clock.monotonic()
        status, output = observation.status, observation.output
        if status == "fail" and not check.critical:
            status, output = "warn", f"non-critical check failed: {output or 'no output'}"
        reading = Reading(
            status=status,
            time=clock.time(),
            taken=finished,
            duration=finished - started,
            observed_value=observation.observed_value,
            observed_unit=observation.observed_unit,
            output=None if status == "pass" else clip(output or status),
        )
        self._readings[check.name] = reading
        self._due[check.name] = finished + check.interval
        if self.events:
            value = reading.observed_value
            number = (
                float(value)
                if isinstance(value, int | float) and not isinstance(value, bool)
                else None
            )
            self.events.publish(
                HealthChecked("health", check.key, status, reading.duration, number)
            )
        return reading


async def _within(probe: Awaitable[T], seconds: float, clock: Clock) -> T:
    """Await ``probe`` for at most ``seconds`` of ``clock``.

    Not ``asyncio.timeout``: that reads the loop's real clock, and tests drive timeouts
    with a `ManualClock`.
    """
    task = asyncio.ensure_future(probe)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
            # Not awaited: a probe that ignores cancellation must not hold the runner.
            task.add_done_callback(_consume)
    if task.done() and not task.cancelled():
        return task.result()
    raise _TimedOut


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.debug("health probe finished after its timeout: %r", task.exception())
