"""`CircuitBreaker`: one breaker per dependency, for sync and async code, in memory.

Ways in, all over the same object and the same state:

- the primitive: ``permit = breaker.acquire()`` (raises `CircuitOpen`), then exactly one of
  ``on_success`` / ``on_failure`` / ``on_error`` / ``on_result`` / ``release``;
- direct calls: ``breaker.call(fn, *args, **kwargs)``, ``await breaker.call_async(fn, ...)``;
- the decorator: ``@breaker`` or ``@breaker(fallback=...)`` on sync or async functions;
- context managers: ``with breaker:`` and ``async with breaker:``.

Concurrency. No lock is taken anywhere, and nothing is held while the protected function
runs or across an ``await``:

- the state lives in one *period* object per state (from one transition to the next),
  replaced with a single attribute store;
- a CLOSED call reads the period, runs, and records its success with one C-level call into
  the window (`windows`); no lock, no time read unless the window or slow-call detection
  needs one;
- a transition is made by whoever takes the current period's one-shot claim (``list.pop``,
  atomic under the GIL); a caller that loses the claim drops its transition, because the
  winner's supersedes it. Only the operator actions (``force_open``, ``force_closed``,
  ``reset``), which must not be dropped, wait for an in-flight transition to land (a few
  bytecodes; they yield the GIL while waiting);
- half-open trial permits are tokens in a list: ``pop`` hands out exactly
  ``half_open_calls`` of them across threads and tasks, ``append`` gives one back when a
  trial is cancelled or ends with an ignored exception;
- a result is recorded against the period the call was admitted in: a call that started
  before a transition cannot move the breaker after it.

The rules themselves (when to trip, for how long, when to recover) are the pure functions of
`sysdesign_kit.breaker.state`; this class is their in-memory shell. Given ``shared=`` (a
`sysdesign_kit.breaker.redis.RedisBreakerState`), the constructor returns the shell that
also shares the state through Redis (`sysdesign_kit.breaker.redis_shell`); without it,
nothing here touches Redis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, cast, overload

from sysdesign_kit.breaker import state as machine
from sysdesign_kit.breaker.classify import (
    CANCELLED,
    FAILURE,
    IGNORED,
    Classifier,
    ExceptionTypes,
)
from sysdesign_kit.breaker.state import NO_CALLS, BreakerPolicy, State, Status
from sysdesign_kit.breaker.windows import CountWindow, Recorder, TimeWindow, Window
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import CircuitOpen, ConfigurationError
from sysdesign_kit.events import (
    BreakerCallFinished,
    BreakerRejected,
    BreakerTransitioned,
    Listener,
    Publisher,
)

if TYPE_CHECKING:
    from sysdesign_kit.breaker.fallbacks import FallbackArg
    from sysdesign_kit.breaker.redis import RedisBreakerState

__all__ = ["BreakerStats", "CircuitBreaker", "Permit"]

P = ParamSpec("P")
R = TypeVar("R")

CLOSED = State.CLOSED
OPEN = State.OPEN
HALF_OPEN = State.HALF_OPEN

# Builds a CircuitOpen without its __init__ chain (half the cost of a rejection); the
# instance is the same, field for field (pinned by a test).
_new_error = BaseException.__new__


class Permit:
    """Proof that a breaker admitted a call; hand it back to exactly one of the breaker's
    ``on_success`` / ``on_failure`` / ``on_error`` / ``on_result`` / ``release``. Opaque."""

    __slots__ = ()


class _Period(Permit):
    """One state of the breaker, from one transition to the next.

    CLOSED periods carry the window recorder (``ok`` is its success hook and doubles as the
    "calls go straight through" flag); HALF_OPEN periods carry the free trial permits and
    the passed trials; ``claim`` holds the one token whose taker makes the next transition.
    ``tie`` is whatever a shell sharing the state elsewhere attaches (None in memory).
    """

    __slots__ = ("claim", "ok", "open_until", "passed", "permits", "recorder", "status", "tie")

    def __init__(
        self, status: Status, recorder: Recorder | None, free_trials: int, tie: Any = None
    ) -> None:
        self.status = status
        # Only an OPEN period refuses calls before this time; -inf elsewhere lets callers
        # test ``now < open_until`` without looking at the state first.
        self.open_until = status.open_until if status.state is OPEN else -math.inf
        self.recorder = recorder
        self.ok: Callable[[], object] | None = recorder.ok if recorder is not None else None
        self.permits: list[None] = [None] * free_trials
        self.passed: list[None] = [None] * status.passed
        self.claim = [True]
        self.tie = tie


class _Trial(Permit):
    """A half-open trial permit (each can be settled once)."""

    __slots__ = ("once", "period")

    def __init__(self, period: _Period) -> None:
        self.period = period
        self.once = [True]


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A breaker as an operator or a dashboard sees it.

    Attributes:
        name: the breaker's name.
        state: CLOSED, OPEN or HALF_OPEN.
        forced: set by ``force_open`` / ``force_closed``.
        calls: calls in the window (CLOSED; 0 otherwise).
        failures: failed calls in the window.
        slow_calls: slow calls in the window (failed ones included).
        failure_rate: ``failures / calls`` (0.0 with no calls).
        slow_call_rate: ``slow_calls / calls``.
        retry_after: seconds until an open breaker lets a trial through (inf when forced
            open; 0.0 when not open).
        trips: consecutive trips since the last recovery.
        trials: HALF_OPEN: trial permits handed out (and not given back).
        trials_passed: HALF_OPEN: trials that succeeded.
        since: monotonic seconds when the current state began.
    """

    name: str
    state: State
    forced: bool
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    retry_after: float
    trips: int
    trials: int
    trials_passed: int
    since: float


class CircuitBreaker:
    """A circuit breaker for one dependency (see the module docstring for the ways in).

    Args:
        name: the dependency's name (events, metrics, `CircuitOpen`, the registry).
        failure_rate: open when failed calls / calls in the window reaches this fraction.
        window: `CountWindow` (last N calls, default ``CountWindow(100)``) or `TimeWindow`
            (last N seconds in buckets).
        minimum_calls: calls the window must hold before the rates count (default 20).
        open_for: seconds to stay open after a trip (default 30).
        open_for_growth: multiply the open time by this on each repeated trip without a
            recovery in between, e.g. 2.0 for 30 s, 60 s, 120 s... (default 1.0: no growth).
        open_for_max: cap on the grown open time in seconds (default: no cap).
        half_open_calls: trial calls admitted in half-open; all must succeed to close,
            any failure reopens (default 3).
        slow_call_threshold: seconds from which a call counts as slow (default None: slow
            calls are not detected, and no time is read for them).
        slow_call_rate: open when slow calls / calls reaches this (default: ``failure_rate``);
            a slow trial call in half-open counts as a failed trial.
        failure_on: exception classes that count as failures (default ``Exception``), or a
            predicate on the exception. Other exceptions count as successes.
        ignore: exception classes counted as neither success nor failure.
        failure_if: a predicate on a call's result that returns True for a failed call.
        clock: the monotonic time source.
        listeners: callables receiving `BreakerTransitioned`, `BreakerRejected` and
            `BreakerCallFinished` events (and `BackendFailure` with ``shared``).
        shared: a `sysdesign_kit.breaker.redis.RedisBreakerState`: breakers of the same name
            in every process using it share one state (see docs/breaker.md, "Shared state
            in Redis"). The breaker built is then a subclass that talks to Redis on state
            changes and window flushes, never on every call. Default None: in memory only.

    Raises:
        ConfigurationError: a value is out of range or of the wrong kind.
    """

    __slots__ = (
        "__weakref__",
        "_classifier",
        "_held",
        "_monotonic",
        "_needs_ns",
        "_period",
        "_slow",
        "clock",
        "component",
        "events",
        "name",
        "policy",
        "window",
    )

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Only the shell that shares state is a different class: the in-memory breaker's
        # methods stay exactly as they are, with no "is it shared?" test on any path.
        if kwargs.get("shared") is None or getattr(cls, "shares_state", False):
            return super().__new__(cls)
        if cls is not CircuitBreaker:
            raise ConfigurationError(
                f"shared= makes a breaker of its own class; {cls.__name__} cannot share state"
            )
        from sysdesign_kit.breaker.redis_shell import SharedCircuitBreaker

        return cast(Self, super().__new__(SharedCircuitBreaker))

    def __init__(
        self,
        name: str,
        *,
        failure_rate: float = 0.5,
        window: Window = CountWindow(),  # noqa: B008 - frozen, so one shared default is safe
        minimum_calls: int = 20,
        open_for: float = 30.0,
        open_for_growth: float = 1.0,
        open_for_max: float | None = None,
        half_open_calls: int = 3,
        slow_call_threshold: float | None = None,
        slow_call_rate: float | None = None,
        failure_on: ExceptionTypes | Callable[[BaseException], bool] = Exception,
        ignore: ExceptionTypes = (),
        failure_if: Callable[[Any], bool] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
        shared: RedisBreakerState | None = None,
    ) -> None:
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise ConfigurationError(f"name must be a str of 1..200 characters, got {name!r}")
        if not isinstance(window, CountWindow | TimeWindow):
            raise ConfigurationError(
                f"window must be a CountWindow or a TimeWindow, got {window!r}"
            )
        if slow_call_threshold is None:
            if slow_call_rate is not None:
                raise ConfigurationError(
                    "slow_call_rate needs slow_call_threshold (the seconds from which a call "
                    "is slow)"
                )
            self._slow: float | None = None
        else:
            if isinstance(slow_call_threshold, bool) or not isinstance(
                slow_call_threshold, int | float
            ):
                raise ConfigurationError(
                    f"slow_call_threshold must be seconds, got {slow_call_threshold!r}"
                )
            if not 0 < slow_call_threshold < math.inf:
                raise ConfigurationError(
                    f"slow_call_threshold must be > 0 and finite seconds, "
                    f"got {slow_call_threshold!r}"
                )
            self._slow = float(slow_call_threshold)
            if slow_call_rate is None:
                slow_call_rate = failure_rate
        self.policy = BreakerPolicy(
            failure_rate=failure_rate,
            minimum_calls=minimum_calls,
            open_for=open_for,
            open_for_growth=open_for_growth,
            open_for_max=open_for_max,
            half_open_calls=half_open_calls,
            slow_call_rate=slow_call_rate,
        )
        if isinstance(window, CountWindow) and minimum_calls > window.size:
            raise ConfigurationError(
                f"minimum_calls ({minimum_calls}) exceeds the window ({window}): the failure "
                "rate could never count"
            )
        self._classifier = Classifier(failure_on, ignore, failure_if)
        self.name = name
        self.window = window
        self.clock = clock
        self._monotonic = clock.monotonic
        self.events = Publisher(listeners)
        self.component = f"breaker:{name}"
        self._needs_ns = window.needs_time
        self._held: ContextVar[tuple[tuple[Permit, float], ...]] = ContextVar(
            f"breaker {name}", default=()
        )
        self._period = self._make_period(Status(since=clock.monotonic()))

    def __repr__(self) -> str:
        status = self._period.status
        forced = ", forced" if status.forced else ""
        return f"<CircuitBreaker {self.name!r} {status.state.value}{forced}>"

    # -- settings read by the wrappers ------------------------------------------------------

    @property
    def slow_call_threshold(self) -> float | None:
        """Seconds from which a call counts as slow (None: not detected)."""
        return self._slow

    @property
    def classifier(self) -> Classifier:
        """What counts as a failure (see `Classifier`)."""
        return self._classifier

    @property
    def lean(self) -> bool:
        """Whether a CLOSED call may skip timing and result checks when no one listens."""
        return self._slow is None and self._classifier.failure_if is None

    # -- the primitive ----------------------------------------------------------------------

    def acquire(self) -> Permit:
        """Ask to make one call.

        Returns:
            The permit to hand back with the call's outcome.

        Raises:
            CircuitOpen: the breaker is open (``retry_after`` = seconds left), or half-open
                with every trial permit taken (``retry_after`` = 0.0). A fresh instance
                each time.
        """
        period = self._period
        if period.ok is not None:
            return period
        permit = self._admit(period)
        if isinstance(permit, CircuitOpen):
            try:
                raise permit
            finally:
                del permit  # else frame -> traceback -> error is a cycle
        return permit

    async def aacquire(self) -> Permit:
        """`acquire` for async code: with shared state, a call that must ask Redis for a
        trial permit awaits the answer instead of blocking the event loop.

        Raises:
            CircuitOpen: as `acquire`.
        """
        return self.acquire()

    def _admit(self, period: _Period) -> Permit | CircuitOpen:
        """`acquire` for a period that is not CLOSED. A rejection is returned, not raised:
        the caller raises it from its own frame, which saves unwinding one frame on the
        fail-fast path (and keeps the breaker's internals out of the traceback)."""
        while True:
            status = period.status
            if status.state is OPEN:
                now = self._monotonic()
                if now < period.open_until:
                    # machine.acquire's answer for an OPEN breaker before its time (inf
                    # when forced), without building a Step.
                    return self._open_error(period.open_until - now)
                step = machine.acquire(self.policy, status, now)
                moved = self._move(period, step.status)
                if moved is not None:
                    return _Trial(moved)
                current = self._period
                if current is period:
                    # Another caller is between taking the claim and storing the new
                    # period: the breaker is turning half-open right now, with no trial
                    # free for us.
                    return self._rejection(HALF_OPEN, 0.0)
                period = current
                if period.ok is not None:
                    return period
            elif status.state is HALF_OPEN:
                try:
                    period.permits.pop()
                except IndexError:
                    return self._rejection(HALF_OPEN, 0.0)
                return _Trial(period)
            else:  # pragma: no cover - CLOSED periods always carry ok
                return period

    def on_success(self, permit: Permit, duration: float = 0.0) -> None:
        """The admitted call succeeded (``duration`` in seconds decides whether it was slow)."""
        self._settle(permit, False, duration)

    def on_failure(self, permit: Permit, duration: float = 0.0) -> None:
        """The admitted call failed."""
        self._settle(permit, True, duration)

    def on_error(self, permit: Permit, error: BaseException, duration: float = 0.0) -> None:
        """The admitted call raised ``error``; classify it and record the outcome.

        Cancellation, ``KeyboardInterrupt`` and ``SystemExit`` count as nothing (a trial
        permit is given back); ignored exceptions too, with an ``"ignored"`` event.
        """
        outcome = self._classifier.exception(error)
        if outcome >= IGNORED:
            self.release(permit)
            if outcome != CANCELLED and self.events.listeners:
                self._finished("ignored", duration, False)
            return
        self._settle(permit, outcome == FAILURE, duration)

    def on_result(self, permit: Permit, result: object, duration: float = 0.0) -> None:
        """The admitted call returned ``result``; ``failure_if`` decides its outcome."""
        self._settle(permit, self._classifier.result(result), duration)

    def release(self, permit: Permit) -> None:
        """The admitted call ended without an outcome; a trial permit is given back."""
        if type(permit) is _Trial:
            try:
                permit.once.pop()
            except IndexError:
                return
            period = permit.period
            if period is self._period:
                period.permits.append(None)

    def _settle(self, permit: Permit, failed: bool, duration: float) -> None:
        slow = self._slow is not None and duration >= self._slow
        if self.events.listeners:
            # Before recording, so a call's event comes before the transition it causes.
            self._finished("failure" if failed else "success", duration, slow)
        if type(permit) is _Period:
            recorder = permit.recorder
            if recorder is not None:
                if not (failed or slow):
                    recorder.ok()
                else:
                    self._closed_bad(permit, recorder, failed, slow)
        elif type(permit) is _Trial:
            self._trial_done(permit, failed or slow)
        else:
            self._settle_other(permit, failed or slow)

    def _settle_other(self, permit: Permit, bad: bool) -> None:
        """A permit of a kind this shell does not make finished (a subclass's own)."""

    def _closed_bad(self, period: _Period, recorder: Recorder, failed: bool, slow: bool) -> None:
        now_ns = self.clock.monotonic_ns() if self._needs_ns else 0
        recorder.add(failed | (slow << 1), now_ns)
        status = period.status
        if status.forced or period is not self._period:
            return
        new = machine.record(
            self.policy,
            status,
            self.clock.monotonic(),
            status.epoch,
            failed=failed,
            slow=slow,
            totals=recorder.totals(now_ns),
        )
        if new is not status:
            self._move(period, new)

    def _trial_done(self, trial: _Trial, bad: bool) -> None:
        try:
            trial.once.pop()
        except IndexError:
            return
        period = trial.period
        if period is not self._period:
            return
        if not bad:
            period.passed.append(None)
        status = period.status
        folded = Status(
            HALF_OPEN,
            status.epoch,
            status.since,
            0.0,
            status.trips,
            self.policy.half_open_calls - len(period.permits),
            len(period.passed) - (0 if bad else 1),
        )
        new = machine.record(self.policy, folded, self.clock.monotonic(), status.epoch, failed=bad)
        if new.state is not HALF_OPEN:
            self._move(period, new)

    # -- transitions --------------------------------------------------------------------------

    def _make_period(self, status: Status, tie: Any = None) -> _Period:
        """The period for ``status`` (``tie``: see `_Period`; unused in memory)."""
        if status.state is CLOSED:
            return _Period(status, self.window.recorder(self.clock), 0)
        if status.state is HALF_OPEN:
            return _Period(status, None, self.policy.half_open_calls - status.trials)
        return _Period(status, None, 0)

    def _move(self, period: _Period, status: Status, tie: Any = None) -> _Period | None:
        """Replace ``period`` by one for ``status`` if this caller takes its claim."""
        try:
            period.claim.pop()
        except IndexError:
            return None
        try:
            new = self._make_period(status) if tie is None else self._make_period(status, tie)
            self._period = new
        except BaseException:
            period.claim.append(True)  # never leave a period claimed by no one
            raise
        previous = period.status.state
        if status.state is not previous and self.events.listeners:
            self.events.publish(
                BreakerTransitioned(self.component, self.name, previous.value, status.state.value)
            )
        return new

    def _operate(self, change: Callable[[Status, float], Status]) -> None:
        while True:
            period = self._period
            if self._move(period, change(period.status, self.clock.monotonic())) is not None:
                return
            time.sleep(0)  # a transition is landing on another thread: let it finish

    # -- operators ------------------------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until `reset` or `force_closed` (``retry_after`` is infinite)."""
        self._operate(machine.force_open)

    def force_closed(self) -> None:
        """Admit every call and never trip until `reset` or `force_open`."""
        self._operate(machine.force_closed)

    def reset(self) -> None:
        """Back to a fresh CLOSED breaker: empty window, no trips, not forced."""
        self._operate(machine.reset)

    # -- introspection ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state (an OPEN breaker turns HALF_OPEN on the first call after its
        open time, not on a timer)."""
        return self._period.status.state

    @property
    def forced(self) -> bool:
        """Whether an operator forced the current state."""
        return self._period.status.forced

    @property
    def retry_after(self) -> float:
        """Seconds until an open breaker admits a trial (0.0 unless open; inf if forced)."""
        status = self._period.status
        if status.state is not OPEN:
            return 0.0
        return max(0.0, status.open_until - self.clock.monotonic())

    @property
    def failure_rate(self) -> float:
        """Failed calls / calls in the current window (0.0 when empty or not CLOSED)."""
        return self.stats().failure_rate

    def stats(self) -> BreakerStats:
        """A snapshot for operators and dashboards."""
        period = self._period
        status = period.status
        recorder = period.recorder
        if recorder is not None:
            now_ns = self.clock.monotonic_ns() if self._needs_ns else 0
            calls, failures, slow = recorder.totals(now_ns)
        else:
            calls, failures, slow = NO_CALLS
        half_open = status.state is HALF_OPEN
        return BreakerStats(
            name=self.name,
            state=status.state,
            forced=status.forced,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            retry_after=self.retry_after,
            trips=status.trips,
            trials=self.policy.half_open_calls - len(period.permits) if half_open else 0,
            trials_passed=len(period.passed) if half_open else 0,
            since=status.since,
        )

    # -- direct calls ---------------------------------------------------------------------------

    def call(self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``func(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitOpen: the breaker refused the call (``func`` was not called).
        """
        period = self._period
        permit = period if period.ok is not None else self._admit(period)
        if isinstance(permit, CircuitOpen):
            try:
                raise permit
            finally:
                del permit  # else frame -> traceback -> error is a cycle
        return self._run(permit, func, args, kwargs)

    def _run(
        self, permit: Permit, func: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        timed = self._slow is not None or bool(self.events.listeners)
        start = self.clock.monotonic() if timed else 0.0
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            self.on_error(permit, error, self.clock.monotonic() - start if timed else 0.0)
            raise
        self.on_result(permit, result, self.clock.monotonic() - start if timed else 0.0)
        return result

    async def call_async(
        self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``func(*args, **kwargs)`` through the breaker (no lock, nothing held across
        the await).

        Raises:
            CircuitOpen: the breaker refused the call (``func`` was not called).
        """
        period = self._period
        permit = period if period.ok is not None else self._admit(period)
        if isinstance(permit, CircuitOpen):
            try:
                raise permit
            finally:
                del permit  # else frame -> traceback -> error is a cycle
        return await self._run_async(permit, func, args, kwargs)

    async def _run_async(
        self,
        permit: Permit,
        func: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        timed = self._slow is not None or bool(self.events.listeners)
        start = self.clock.monotonic() if timed else 0.0
        try:
            result = await func(*args, **kwargs)
        except BaseException as error:
            self.on_error(permit, error, self.clock.monotonic() - start if timed else 0.0)
            raise
        self.on_result(permit, result, self.clock.monotonic() - start if timed else 0.0)
        return result

    # -- decorator ------------------------------------------------------------------------------

    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def __call__(
        self, func: None = None, /, *, fallback: FallbackArg
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def __call__(
        self, func: Callable[P, R] | None = None, /, *, fallback: FallbackArg | None = None
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Protect a sync or async function: ``@breaker`` or ``@breaker(fallback=...)``.

        Args:
            func: the function (when used as ``@breaker``).
            fallback: what to answer instead of raising when the breaker is open or the call
                failed: a `Fallback` from `sysdesign_kit.breaker.fallbacks`, a callable
                given the exception, or a plain value.

        Returns:
            The wrapped function, with the same signature (sync stays sync, async stays
            async).
        """
        from sysdesign_kit.breaker.decorate import protect

        if func is None:

            def decorate(inner: Callable[P, R]) -> Callable[P, R]:
                return protect(self, inner, fallback)

            return decorate
        return protect(self, func, fallback)

    # -- context managers -----------------------------------------------------------------------

    def __enter__(self) -> CircuitBreaker:
        permit = self.acquire()
        self._held.set((*self._held.get(), (permit, self.clock.monotonic())))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self._held.get()
        permit, start = held[-1]
        self._held.set(held[:-1])
        duration = self.clock.monotonic() - start
        if exc is None:
            self.on_success(permit, duration)
        else:
            self.on_error(permit, exc, duration)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- events and rejections ------------------------------------------------------------------

    def _rejection(self, state: State, retry_after: float) -> CircuitOpen:
        """A fresh CircuitOpen, equal field for field to ``CircuitOpen(name, state=...,
        retry_after=...)`` (pinned by a test) at half the cost: its ``__init__`` chain is
        skipped. (`_open_error` builds the OPEN one the same way.)"""
        error = _new_error(CircuitOpen, self.name)
        error.__dict__ = {"retry_after": retry_after, "name": self.name, "state": state.value}
        if self.events.listeners:
            self._rejected(retry_after)
        return error

    def _open_error(self, retry_after: float) -> CircuitOpen:
        """The fail-fast path's `_rejection` for an OPEN breaker."""
        error = _new_error(CircuitOpen, self.name)
        error.__dict__ = {"retry_after": retry_after, "name": self.name, "state": "open"}
        if self.events.listeners:
            self._rejected(retry_after)
        return error

    def _rejected(self, retry_after: float) -> None:
        self.events.publish(BreakerRejected(self.component, self.name, retry_after))

    def _finished(self, outcome: str, duration: float, slow: bool) -> None:
        self.events.publish(BreakerCallFinished(self.component, self.name, outcome, duration, slow))
