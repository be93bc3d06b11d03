"""The circuit breaker as a pure state machine: values in, values out, time passed in.

Nothing here locks, sleeps, reads a clock or does I/O. A *shell* owns the current `Status`
wherever it likes (an attribute, a Redis hash, a database row), feeds these functions the
current time and the outcome of each call, and stores what they return. The in-memory
`CircuitBreaker` is one such shell; a shell that keeps the state in Redis runs the same rules
(as a Lua script held against these functions by a property test).

The states::

                 failure rate (or slow-call rate) >= threshold,
                 checked when a failed or slow call is recorded,
                 once the window holds >= minimum_calls calls
      ┌────────┐ ──────────────────────────────────────────────► ┌──────┐
      │ CLOSED │                                                 │ OPEN │◄─┐
      └────────┘ ◄───────┐                                       └──────┘  │
                         │ half_open_calls trials                   │      │ a trial failed
                         │ all succeeded                 first call │      │ (or was slow)
                         │                          after open_until│      │
                       ┌───────────┐ ◄──────────────────────────────┘      │
                       │ HALF_OPEN │ ──────────────────────────────────────┘
                       └───────────┘

Operators can force the breaker OPEN (it rejects every call until reset, ``retry_after`` is
infinite) or CLOSED (it admits every call and never trips), and reset it to a fresh CLOSED.

The interface a shell drives (each returns a new `Status`, or the same object when nothing
changed, so ``new is not old`` tells the shell to store it and ``new.state != old.state``
tells it to publish a transition):

``acquire(policy, status, now) -> Step``
    May a call start now? ``Step.admitted`` says yes or no, ``Step.retry_after`` says when to
    come back, ``Step.status`` is the status to store (an OPEN breaker whose time is up turns
    HALF_OPEN here, and every admission in HALF_OPEN takes one of ``half_open_calls`` trial
    permits). The admitted call belongs to period ``Step.status.epoch``.

``record(policy, status, now, epoch, failed=, slow=, totals=) -> Status``
    A call admitted in period ``epoch`` has finished. ``failed`` and ``slow`` classify it
    (the shell decides what counts as a failure; ``slow`` is only ever true when the policy
    detects slow calls). ``totals`` are the sliding window's counts *after* the shell
    recorded this call in the window of the current CLOSED period (see `windows`); they are
    only read in CLOSED. Outcomes from an earlier period (``epoch != status.epoch``) change
    nothing: a call that started before the breaker tripped cannot close it again.

``release(status, epoch) -> Status``
    A call admitted in period ``epoch`` ended without an outcome (cancelled, interrupted,
    or an ignored exception): in HALF_OPEN its trial permit is given back.

``force_open(status, now)``, ``force_closed(status, now)``, ``reset(status, now)``
    Operator actions; each starts a new period.

Every transition starts a new period (``epoch + 1``); a CLOSED period starts with an empty
window, so the shell makes a fresh window whenever the epoch of a CLOSED status changes.

A shell may keep the half-open counters (``trials`` and ``passed``) in structures of its
own, for example ones it can update atomically without a lock, as long as it folds them into
the `Status` it passes to `record` and `release`. It may also answer the two hottest
questions without calling `acquire`, as long as it answers the same: a CLOSED breaker admits
(nothing changes), an OPEN one refuses before ``open_until`` with ``open_until - now``.

The window is the shell's too: it records every finished call of the current CLOSED period
(outcome codes and the two window kinds are in `sysdesign_kit.breaker.windows`) and passes
the counts as `Totals` to `record`. A success never trips the breaker, so a shell only needs
the counts when it records a failed or slow call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import NamedTuple

from sysdesign_kit.errors import ConfigurationError

__all__ = [
    "NO_CALLS",
    "BreakerPolicy",
    "State",
    "Status",
    "Step",
    "Totals",
    "acquire",
    "force_closed",
    "force_open",
    "record",
    "release",
    "reset",
]


class State(StrEnum):
    """The three states of a circuit breaker (their values are what events carry)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED = State.CLOSED
OPEN = State.OPEN
HALF_OPEN = State.HALF_OPEN


class Totals(NamedTuple):
    """What a sliding window holds: calls, failed calls and slow calls (slow failures count
    in both)."""

    calls: int
    failures: int
    slow: int


#: An empty window.
NO_CALLS = Totals(0, 0, 0)


def _rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number in (0, 1], got {value!r}")
    if not 0 < value <= 1:
        hint = f" (did you mean {value / 100:g}?)" if 1 < value <= 100 else ""
        raise ConfigurationError(f"{name} is a fraction of calls in (0, 1], got {value!r}{hint}")
    return float(value)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if not (0 < value < math.inf):
        raise ConfigurationError(f"{name} must be > 0 and finite seconds, got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """The numbers that decide when a breaker trips and recovers (validated here, once).

    Args:
        failure_rate: open when failed calls / calls in the window reaches this (0, 1].
        minimum_calls: calls the window must hold before either rate counts.
        open_for: seconds to stay open after the first trip.
        open_for_growth: multiply the open time by this on each further trip without a
            recovery in between (1.0: no growth).
        open_for_max: cap on the grown open time in seconds (None: no cap).
        half_open_calls: trial calls admitted in HALF_OPEN; all must succeed to close.
        slow_call_rate: open when slow calls / calls reaches this (0, 1]; None when slow
            calls are not detected.

    Raises:
        ConfigurationError: a value is out of range; the message names it.
    """

    failure_rate: float = 0.5
    minimum_calls: int = 20
    open_for: float = 30.0
    open_for_growth: float = 1.0
    open_for_max: float | None = None
    half_open_calls: int = 3
    slow_call_rate: float | None = None

    def __post_init__(self) -> None:
        _rate("failure_rate", self.failure_rate)
        _count("minimum_calls", self.minimum_calls)
        _seconds("open_for", self.open_for)
        growth = self.open_for_growth
        if isinstance(growth, bool) or not isinstance(growth, int | float):
            raise ConfigurationError(f"open_for_growth must be a number >= 1, got {growth!r}")
        if not 1 <= growth < math.inf:
            raise ConfigurationError(
                f"open_for_growth multiplies the open time on each repeated trip and must be "
                f">= 1 and finite (1: no growth), got {growth!r}"
            )
        if self.open_for_max is not None:
            _seconds("open_for_max", self.open_for_max)
            if self.open_for_max < self.open_for:
                raise ConfigurationError(
                    f"open_for_max ({self.open_for_max!r}) must be >= open_for ({self.open_for!r})"
                )
        _count("half_open_calls", self.half_open_calls)
        if self.slow_call_rate is not None:
            _rate("slow_call_rate", self.slow_call_rate)

    def should_trip(self, totals: Totals) -> bool:
        """Whether a CLOSED breaker with this window should open."""
        calls, failures, slow = totals
        if calls < self.minimum_calls:
            return False
        # Division, not multiplication: 3 / 10 and the literal 0.3 are the same double,
        # 0.3 * 10 is not 3.0.
        if failures / calls >= self.failure_rate:
            return True
        return self.slow_call_rate is not None and slow / calls >= self.slow_call_rate

    def open_duration(self, trips: int) -> float:
        """Seconds to stay open on the ``trips``-th consecutive trip (from 1)."""
        duration = self.open_for
        if self.open_for_growth != 1.0 and trips > 1:
            try:
                duration = self.open_for * self.open_for_growth ** (trips - 1)
            except OverflowError:
                duration = math.inf
        if self.open_for_max is not None and duration > self.open_for_max:
            return self.open_for_max
        return duration


@dataclass(frozen=True, slots=True)
class Status:
    """Everything a breaker remembers apart from its window.

    Attributes:
        state: CLOSED, OPEN or HALF_OPEN.
        epoch: the period number; every transition adds one.
        since: monotonic seconds when this period began.
        open_until: OPEN: monotonic seconds when trials may start (inf when forced open);
            0.0 otherwise.
        trips: consecutive trips since the breaker last recovered (drives the open-time
            growth); 0 in a CLOSED breaker that recovered or was reset.
        trials: HALF_OPEN: trial permits handed out and not given back.
        passed: HALF_OPEN: trials that succeeded.
        forced: set by an operator (force_open / force_closed); cleared by reset.
    """

    state: State = CLOSED
    epoch: int = 0
    since: float = 0.0
    open_until: float = 0.0
    trips: int = 0
    trials: int = 0
    passed: int = 0
    forced: bool = False


class Step(NamedTuple):
    """The answer of `acquire`: the status to store, whether the call may go ahead, and
    when to come back if not (seconds; 0.0 when a half-open breaker has no trial free)."""

    status: Status
    admitted: bool
    retry_after: float


def acquire(policy: BreakerPolicy, status: Status, now: float) -> Step:
    """May a call start at ``now``? (See the module docstring.)"""
    state = status.state
    if state is CLOSED:
        return Step(status, True, 0.0)
    if state is OPEN:
        if status.forced:
            return Step(status, False, math.inf)
        if now < status.open_until:
            return Step(status, False, status.open_until - now)
        status = Status(HALF_OPEN, status.epoch + 1, now, 0.0, status.trips)
    if status.trials < policy.half_open_calls:
        return Step(replace(status, trials=status.trials + 1), True, 0.0)
    return Step(status, False, 0.0)


def record(
    policy: BreakerPolicy,
    status: Status,
    now: float,
    epoch: int,
    *,
    failed: bool,
    slow: bool = False,
    totals: Totals = NO_CALLS,
) -> Status:
    """A call admitted in period ``epoch`` finished; returns the status to store."""
    if epoch != status.epoch:
        return status
    state = status.state
    if state is CLOSED:
        if status.forced or not (failed or slow) or not policy.should_trip(totals):
            return status
        return _trip(policy, status, now)
    if state is HALF_OPEN:
        if failed or slow:
            return _trip(policy, status, now)
        passed = status.passed + 1
        if passed >= policy.half_open_calls:
            return Status(CLOSED, status.epoch + 1, now)
        return replace(status, passed=passed)
    return status


def release(status: Status, epoch: int) -> Status:
    """A call admitted in period ``epoch`` ended without an outcome; a trial is given back."""
    if epoch != status.epoch or status.state is not HALF_OPEN or status.trials == 0:
        return status
    return replace(status, trials=status.trials - 1)


def force_open(status: Status, now: float) -> Status:
    """Operator: open until `reset` or `force_closed`, rejecting every call."""
    return Status(OPEN, status.epoch + 1, now, math.inf, status.trips, forced=True)


def force_closed(status: Status, now: float) -> Status:
    """Operator: admit every call and never trip, until `reset` or `force_open`."""
    return Status(CLOSED, status.epoch + 1, now, forced=True)


def reset(status: Status, now: float) -> Status:
    """Operator: a fresh CLOSED breaker (empty window, no trips, not forced)."""
    return Status(CLOSED, status.epoch + 1, now)


def _trip(policy: BreakerPolicy, status: Status, now: float) -> Status:
    trips = status.trips + 1
    return Status(OPEN, status.epoch + 1, now, now + policy.open_duration(trips), trips)
