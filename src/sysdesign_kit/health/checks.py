"""Checks as objects: the `Check` base, its options, and `CallableCheck` for your own.

A check is configuration plus one coroutine, ``probe()``, which looks at one thing and
returns an `Observation` (or raises: any exception is a ``fail`` whose output is the
error). It never runs from a request: the `HealthRegistry` runs it in the background every
``interval`` seconds, bounded by ``timeout``, and endpoints serve the cached reading.

Which endpoint shows a check:

- ``/live`` (``liveness=True``): only what a restart would fix, such as a stalled event
  loop. A dependency check (Redis, database, HTTP) is refused there, because when the
  dependency goes down every pod would be restarted at once; ``force_liveness=True``
  overrides that for the rare case where you mean it.
- ``/ready`` (``readiness=True``, the default): whether to send this process traffic.
- ``/health``: every check.
"""

from __future__ import annotations

import inspect
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar, Final, TypedDict, Unpack

from sysdesign_kit.errors import ConfigurationError, SysdesignError
from sysdesign_kit.health._threads import Worker
from sysdesign_kit.health.reading import Observation, clip

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "CallableCheck",
    "Check",
    "CheckOptions",
    "describe_error",
]

#: Seconds between two readings of a check (the seed's "every 10 s").
DEFAULT_INTERVAL: Final = 10.0
#: Seconds a probe may take before it counts as failed.
DEFAULT_TIMEOUT: Final = 2.0

# Names go into URLs (/ready/{name}), query strings (?exclude=) and the verbose listing.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_MEASUREMENT = re.compile(r"[^:\s]{1,64}\Z")


class CheckOptions(TypedDict, total=False):
    """The options every check accepts (see `Check`)."""

    measurement: str
    component_type: str
    component_id: str | None
    affected_endpoints: Sequence[str]
    timeout: float
    interval: float
    critical: bool
    liveness: bool
    readiness: bool
    force_liveness: bool
    stale_after: float | None
    expire_after: float | None


class Check(ABC):
    """One health check: what to look at (``probe``) and how to treat what it sees.

    Args:
        name: the component's name: letters, digits, ``.``, ``_``, ``-`` (at most 64);
            used in ``/ready/{name}``, ``?exclude=`` and the verbose listing.
        measurement: what is measured; the check's key in the health+json ``checks``
            object is ``"{name}:{measurement}"`` (``"redis:responseTime"``).
        component_type: ``"component"``, ``"datastore"``, ``"system"`` or a URI.
        component_id: a unique id of the instance checked (the ``componentId`` field).
        affected_endpoints: URI templates of your API that suffer when this check fails.
        timeout: seconds a probe may take; a timeout is a ``fail``.
        interval: seconds between readings.
        critical: a failing non-critical check reports ``warn``, not ``fail``.
        liveness: show the check at ``/live``; refused for dependency checks unless
            ``force_liveness``.
        readiness: show the check at ``/ready``.
        force_liveness: allow a dependency check at ``/live`` anyway.
        stale_after: a reading older than this (seconds) is at best ``warn``;
            default ``2 * interval + timeout``.
        expire_after: a reading older than this is ``fail``; default
            ``4 * interval + timeout``.

    Raises:
        ConfigurationError: a name, number or combination that cannot work.
    """

    #: Whether this kind of check looks at something outside the process.
    dependency: ClassVar[bool] = False
    default_measurement: ClassVar[str] = "status"
    default_component_type: ClassVar[str] = "component"
    default_liveness: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        *,
        measurement: str | None = None,
        component_type: str | None = None,
        component_id: str | None = None,
        affected_endpoints: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        interval: float = DEFAULT_INTERVAL,
        critical: bool = True,
        liveness: bool | None = None,
        readiness: bool = True,
        force_liveness: bool = False,
        stale_after: float | None = None,
        expire_after: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(
                f"check name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                "(it is used in URLs and ?exclude=)"
            )
        measurement = self.default_measurement if measurement is None else measurement
        if not isinstance(measurement, str) or not _MEASUREMENT.match(measurement):
            raise ConfigurationError(
                f"check {name!r}: measurement {measurement!r} must be 1-64 characters "
                "without ':' or spaces"
            )
        if isinstance(affected_endpoints, str) or not all(
            isinstance(item, str) for item in affected_endpoints
        ):
            raise ConfigurationError(
                f"check {name!r}: affected_endpoints must be a sequence of URI templates"
            )
        self.name = name
        self.measurement = measurement
        self.component_type = component_type or self.default_component_type
        self.component_id = component_id
        self.affected_endpoints = tuple(affected_endpoints)
        self.timeout = _seconds(name, "timeout", timeout)
        self.interval = _seconds(name, "interval", interval)
        self.critical = bool(critical)
        self.liveness = self.default_liveness if liveness is None else bool(liveness)
        self.readiness = bool(readiness)
        if self.liveness and self.dependency and not force_liveness:
            raise ConfigurationError(
                f"check {name!r} looks at a dependency: at /live, an outage of it would "
                "restart every instance at once; put it in /ready, or pass "
                "force_liveness=True if that is what you want"
            )
        default_stale = 2 * self.interval + self.timeout
        self.stale_after = _seconds(
            name, "stale_after", default_stale if stale_after is None else stale_after
        )
        default_expire = max(4 * self.interval + self.timeout, self.stale_after)
        self.expire_after = _seconds(
            name, "expire_after", default_expire if expire_after is None else expire_after
        )
        if self.expire_after < self.stale_after:
            raise ConfigurationError(
                f"check {name!r}: expire_after ({self.expire_after:g} s) must not be below "
                f"stale_after ({self.stale_after:g} s)"
            )

    @property
    def key(self) -> str:
        """The key in the health+json ``checks`` object: ``"{name}:{measurement}"``."""
        return f"{self.name}:{self.measurement}"

    @abstractmethod
    async def probe(self) -> Observation:
        """Look once; return what was seen, or raise (any exception is a ``fail``)."""

    async def start(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Called once when the registry starts (open a monitor, warm a client)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Called once when the registry stops: release clients, threads, timers."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


CheckResult = Observation | bool | None
CheckFunction = Callable[[], CheckResult | Awaitable[CheckResult]]


class CallableCheck(Check):
    """A check made of your own function.

    The function takes no arguments and returns ``None`` or ``True`` (pass), ``False``
    (fail) or an `Observation`; raising is a fail with the exception as output. Coroutine
    functions run on the event loop; plain functions run in a thread of their own so that a
    blocking one cannot stall the loop (and its timeout still holds), unless
    ``in_thread=False`` for a cheap in-memory test.

    Args:
        name: the check's name (see `Check`).
        function: what to call.
        in_thread: run a plain function in a thread (default) or on the loop.
        **options: see `Check`; by default a callable check is at ``/ready`` only, pass
            ``liveness=True`` for a process-level check.
    """

    def __init__(
        self,
        name: str,
        function: CheckFunction,
        *,
        in_thread: bool = True,
        **options: Unpack[CheckOptions],
    ) -> None:
        super().__init__(name, **options)
        if not callable(function):
            raise ConfigurationError(f"check {name!r}: function must be callable")
        self.function = function
        # An object with an ``async def __call__`` is a coroutine function too.
        self._coroutine = inspect.iscoroutinefunction(function) or (
            inspect.iscoroutinefunction(type(function).__call__)
        )
        self._worker = Worker(name) if in_thread and not self._coroutine else None

    async def probe(self) -> Observation:
        """Call the function and read its answer."""
        if self._worker is not None:
            result: object = await self._worker.run(self.function)
        else:
            result = self.function()
        if inspect.isawaitable(result):
            result = await result
        return _as_observation(result)


def _as_observation(result: object) -> Observation:
    """A custom function's answer as an `Observation`."""
    if isinstance(result, Observation):
        return result
    if result is None or result is True:
        return Observation("pass")
    if result is False:
        return Observation("fail", output="the check returned False")
    return Observation(
        "fail",
        output=f"the check returned a {type(result).__name__}; expected None, a bool or an "
        "Observation",
    )


def describe_error(exc: BaseException) -> str:
    """A one-line, bounded description of why a probe failed.

    Our own errors carry a complete message; a foreign one is prefixed with its type,
    which is often the only clue (``TimeoutError`` has no message at all).
    """
    text = str(exc).strip()
    if not isinstance(exc, SysdesignError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return clip(" ".join(text.split()))


def _seconds(name: str, option: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"check {name!r}: {option} must be a finite number of seconds > 0, got {value!r}"
        )
    return float(value)
