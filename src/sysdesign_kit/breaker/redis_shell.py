"""The breaker shell behind ``CircuitBreaker(name, shared=RedisBreakerState(...))``.

Local windows, shared state. Each process keeps the in-memory breaker exactly as it is (its
own window, its own trips, the same lock-free fast path) and ties it to the shared state:

- **CLOSED**: every finished call goes into the local window and into three counters;
  whichever call finds ``flush_interval`` passed hands a flush to a worker thread, which
  adds the counts since the last flush to the shared window in one script call. The script
  trips the shared breaker when the window of all processes crosses the threshold (minimum
  calls counted over all of them). A trip of the local window is applied at once locally
  and written to Redis as a trip of the shared period it happened in; a stale period (the
  shared breaker moved on meanwhile) cannot overwrite a newer state.
- Every reply carries the shared status; the process takes it on when the shared epoch is
  newer than the one its period mirrors. So a process learns of an OPEN breaker at its next
  flush: at most ``flush_interval`` after its first call that follows the trip.
- **OPEN**: refusals are local until the shared open time (no round trip); one refusal per
  ``flush_interval`` also has a worker check the shared state (an operator's reset or force
  elsewhere is seen within that time). After the open time, the first caller asks Redis;
  the script turns the shared breaker HALF_OPEN and hands out exactly ``half_open_calls``
  trial permits across all processes. The caller waits for that one answer (a sync caller
  blocks; an async one awaits a worker, the loop keeps running); other local callers are
  refused meanwhile.
- **HALF_OPEN**: a trial's outcome is recorded in Redis (any failure reopens with the
  growth rule, all passed closes with a new epoch and an empty window). A process without a
  trial asks again at most once per ``flush_interval``.
- Operators (``force_open``, ``force_closed``, ``reset``) act locally, then on the shared
  state (blocking, one round trip; `BackendUnavailable` if Redis fails: the local change
  stays).

When Redis fails, the shell falls back to the in-memory rules on the local state (a local
half-open with local trials, local trips), publishes `BackendFailure` with
``outcome="local"`` once per burst, and tries Redis again after ``retry_interval``. What it
decided alone is reconciled at the next contact: the shared state wins, except that a local
trip of the period the shared breaker is still in is written to it.

Each local period carries a `_Tie`: the shared epoch it mirrors (``synced``), or the one it
was derived from by a local transition Redis has not confirmed yet.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from typing import Any

from sysdesign_kit.breaker import state as machine
from sysdesign_kit.breaker.breaker import BreakerStats, CircuitBreaker, Permit, _Period
from sysdesign_kit.breaker.redis import RedisBreakerState
from sysdesign_kit.breaker.redis_rules import (
    ACQUIRE,
    FLUSH,
    FORCE_CLOSED,
    FORCE_OPEN,
    OPERATIONS,
    RECORD,
    RELEASE,
    RESET,
    TRIP,
    SharedView,
)
from sysdesign_kit.breaker.state import State, Status
from sysdesign_kit.breaker.windows import FAILED, SLOW, Recorder, _read
from sysdesign_kit.errors import BackendUnavailable, CircuitOpen, ConfigurationError
from sysdesign_kit.events import BackendFailure

__all__ = ["SharedCircuitBreaker"]

CLOSED = State.CLOSED
OPEN = State.OPEN
HALF_OPEN = State.HALF_OPEN
_NONE = (0, 0, 0)

Answer = tuple[SharedView, float]


class _Tie:
    """What a local period knows of the shared state.

    ``epoch``: the shared period it mirrors (``synced``) or was derived from (not synced;
    None when the process never heard from Redis). ``pushing``: a local change is on its
    way to Redis, so answers from before it are ignored. ``recheck_at``: a HALF_OPEN
    process without a trial asks again from then. ``asking``: the one token of the local
    caller asking Redis for a permit.
    """

    __slots__ = ("asking", "epoch", "pushing", "recheck_at", "synced")

    def __init__(
        self,
        epoch: int | None,
        synced: bool,
        *,
        pushing: bool = False,
        recheck_at: float = -math.inf,
    ) -> None:
        self.epoch = epoch
        self.synced = synced
        self.pushing = pushing
        self.recheck_at = recheck_at
        self.asking: list[None] = [None]


class _Counting:
    """A CLOSED period's window with shared state: the local recorder, plus counts of the
    calls since the last flush, plus the check whether a flush is due (one clock read)."""

    __slots__ = ("_add", "_breaker", "_counters", "_lock", "_sent", "ok", "totals")

    def __init__(self, inner: Recorder, breaker: SharedCircuitBreaker) -> None:
        calls = itertools.count()
        self._counters = (calls, itertools.count(), itertools.count())
        self._sent = _NONE
        self._lock = threading.Lock()  # flushes only
        self._add = inner.add
        self._breaker = breaker
        self.totals = inner.totals
        inner_ok = inner.ok
        monotonic = breaker.clock.monotonic

        def ok() -> None:
            inner_ok()
            next(calls)
            if monotonic() >= breaker.next_sync:
                breaker.sync_soon()

        self.ok: Callable[[], object] = ok

    def add(self, code: int, now_ns: int) -> None:
        """Record a call with outcome ``code`` locally and count it for the next flush."""
        self._add(code, now_ns)
        calls, failures, slow = self._counters
        next(calls)
        if code & FAILED:
            next(failures)
        if code & SLOW:
            next(slow)
        breaker = self._breaker
        if breaker.clock.monotonic() >= breaker.next_sync:
            breaker.sync_soon()

    def take(self) -> tuple[int, int, int]:
        """Calls, failures and slow calls counted since the last `take`."""
        counters = self._counters
        with self._lock:
            # `add` counts the call before its failure: reading the other way round, a
            # snapshot never holds a failure without its call.
            slow, failures = _read(counters[2]), _read(counters[1])
            calls = _read(counters[0])
            a, b, c = self._sent
            self._sent = (calls, failures, slow)
        return calls - a, failures - b, slow - c


class _Pending(Permit):
    """`_admit`'s answer when Redis must decide: the runner asks (sync or async)."""

    __slots__ = ("period",)

    def __init__(self, period: _Period) -> None:
        self.period = period


class _SharedTrial(Permit):
    """A trial permit of the shared half-open period ``epoch`` (each settles once)."""

    __slots__ = ("epoch", "once")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.once = [True]


class SharedCircuitBreaker(CircuitBreaker):
    """A `CircuitBreaker` whose state is shared through Redis (see the module docstring).

    Made by ``CircuitBreaker(name, shared=...)``; the same settings and ways in.
    """

    __slots__ = ("_args", "_key", "_seen_burst", "_syncing", "next_sync", "shared")

    #: Marks the class ``CircuitBreaker.__new__`` builds for ``shared=``.
    shares_state = True

    def __init__(self, name: str, *, shared: RedisBreakerState | None = None, **settings: Any):
        if not isinstance(shared, RedisBreakerState):
            raise ConfigurationError(f"shared must be a RedisBreakerState, got {shared!r}")
        self.shared = shared
        #: Local monotonic time from which the next call triggers a flush or a check.
        self.next_sync = -math.inf
        self._syncing = [True]
        self._seen_burst = 0
        super().__init__(name, **settings)
        self._key = shared.key(name)
        self._args = shared.rules(self.window, self.policy).args()

    # -- periods ------------------------------------------------------------------------------

    def _make_period(self, status: Status, tie: Any = None) -> _Period:
        if not isinstance(tie, _Tie):
            tie = self._local_tie()
        if status.state is CLOSED:
            return _Period(status, _Counting(self.window.recorder(self.clock), self), 0, tie)
        if status.state is HALF_OPEN:
            # A half-open period that mirrors the shared one has no local trial permits:
            # every trial is Redis's.
            free = 0 if tie.synced else self.policy.half_open_calls - status.trials
            return _Period(status, None, max(0, free), tie)
        return _Period(status, None, 0, tie)

    def _local_tie(self) -> _Tie:
        try:
            before: _Tie = self._period.tie  # the period whose claim the mover holds
        except AttributeError:  # the first period
            return _Tie(None, False)
        return _Tie(before.epoch, False, pushing=True)

    def _move(self, period: _Period, status: Status, tie: Any = None) -> _Period | None:
        new = super()._move(period, status, tie)
        if new is None or tie is not None:
            return new
        # A transition decided here. The local window tripped: tell Redis (the trip of the
        # shared period this one mirrored).
        base: int | None = period.tie.epoch
        if (
            status.state is OPEN
            and not status.forced
            and period.status.state is CLOSED
            and base is not None
            and self._push(TRIP, base, new)
        ):
            return new
        new.tie.pushing = False
        return new

    def _mirror(self, view: SharedView, epoch: int, t0: float) -> Status:
        """The local status for a shared one (times on the local clock from ``t0``)."""
        state = view.state
        half = state is HALF_OPEN
        return Status(
            state,
            epoch,
            t0,
            t0 + max(0.0, view.remaining) if state is OPEN else 0.0,
            view.trips,
            view.trials if half else 0,
            view.passed if half else 0,
            view.forced,
        )

    def _adopt(self, view: SharedView, t0: float, *, answer: bool = False) -> _Period:
        """Take on the shared status if it is newer than what the current period knows."""
        while True:
            period = self._period
            tie: _Tie = period.tie
            status = period.status
            base = tie.epoch
            if base is not None:
                if view.epoch < base:
                    return period  # an answer from before a newer one
                if view.epoch == base and (tie.synced or (tie.pushing and not answer)):
                    if tie.synced and status.state is HALF_OPEN and view.state is HALF_OPEN:
                        # Trials handed out or passed elsewhere: the same period, newer
                        # counts (only stats read them; this process holds no local trial).
                        period.status = replace(status, trials=view.trials, passed=view.passed)
                    return period
            if (
                not answer
                and not tie.synced
                and (base is None or view.epoch == base)
                and status.state is OPEN
                and not status.forced
                and view.state is CLOSED
                and not view.forced
            ):
                # Tripped here before Redis heard of it (it was away, or this process had
                # not synced yet), in the period the shared breaker is still in: the trip
                # counts there too.
                tie.epoch = view.epoch
                if self._push(TRIP, view.epoch, period):
                    return period
            if (
                status.state is CLOSED
                and view.state is CLOSED
                and status.forced == view.forced
                and (base is None or (not tie.synced and view.epoch == base))
            ):
                # Same state: keep this period and its window (calls made while apart are
                # real calls), now tied to the shared one.
                period.tie = _Tie(view.epoch, True)
                return period
            new_tie = _Tie(view.epoch, True, recheck_at=t0)
            moved = self._move(period, self._mirror(view, status.epoch + 1, t0), new_tie)
            if moved is not None:
                return moved
            if self._period is period:
                time.sleep(0)  # another thread is storing a transition: let it land

    # -- talking to Redis -------------------------------------------------------------------

    def _call(
        self, op: str, epoch: int | None, counts: tuple[int, int, int] = _NONE
    ) -> Answer | BackendUnavailable:
        """One script call; a failure is reported (once per burst) and returned."""
        t0 = self._monotonic()
        shared = self.shared
        try:
            view = shared.call(self._key, op, epoch, counts, self._args)
        except BackendUnavailable as exc:
            shared.failed(exc)
            self._went_local(OPERATIONS[op])
            return exc
        shared.recovered()
        # Any answer is news of the shared state: the next flush can wait its interval.
        self.next_sync = max(self.next_sync, t0 + shared.flush_interval)
        return view, t0

    def _went_local(self, operation: str) -> None:
        """Publish `BackendFailure` the first time this breaker meets a failure burst."""
        shared = self.shared
        burst = shared.burst
        if not shared.failing or shared.closed or self._seen_burst == burst:
            return
        with shared._lock:
            if self._seen_burst == burst:
                return
            self._seen_burst = burst
        if self.events.listeners:
            self.events.publish(
                BackendFailure(self.component, shared.kind, operation, shared.error, "local")
            )

    def _background(self, op: str, epoch: int | None, counts: tuple[int, int, int]) -> bool:
        """Send one operation from a worker and take on the answer; False if it cannot."""
        shared = self.shared
        if not shared.available():
            self._went_local(OPERATIONS[op])
            return False

        def job() -> None:
            answer = self._call(op, epoch, counts)
            if isinstance(answer, tuple):
                self._adopt(*answer)

        return shared.submit(job)

    def _push(self, op: str, epoch: int, period: _Period) -> bool:
        """Write a local transition of ``period`` to Redis from a worker."""
        shared = self.shared
        tie: _Tie = period.tie
        if not shared.available():
            self._went_local(OPERATIONS[op])
            return False
        tie.pushing = True

        def job() -> None:
            answer = self._call(op, epoch)
            tie.pushing = False
            if isinstance(answer, tuple):
                self._adopt(*answer)

        if shared.submit(job):
            return True
        tie.pushing = False
        return False

    def sync_soon(self) -> None:
        """Flush the window (and learn the shared state) from a worker, if one is due."""
        now = self._monotonic()
        if now < self.next_sync:
            return
        shared = self.shared
        self.next_sync = now + shared.flush_interval
        if not shared.available():
            self._went_local("flush")
            return
        try:
            self._syncing.pop()  # one flush at a time
        except IndexError:
            return
        if not shared.submit(self._flush):
            self._syncing.append(True)

    def _flush(self) -> SharedView | None:
        try:
            period = self._period
            tie: _Tie = period.tie
            recorder = period.recorder
            counts = recorder.take() if isinstance(recorder, _Counting) else _NONE
            answer = self._call(FLUSH, tie.epoch, counts)
            if not isinstance(answer, tuple):
                return None
            self._adopt(*answer)
            return answer[0]
        finally:
            self._syncing.append(True)

    def sync_shared(self) -> SharedView | None:
        """Flush and take on the shared state now (blocking; see `RedisBreakerState.sync`)."""
        while True:
            try:
                self._syncing.pop()
            except IndexError:
                time.sleep(0.001)  # a worker is flushing: wait for it
                continue
            return self._flush()

    def peek_shared(self) -> SharedView:
        """The shared state as Redis holds it (see `RedisBreakerState.peek`).

        Raises:
            BackendUnavailable: Redis failed.
        """
        return self.shared.call(self._key, FLUSH, None, _NONE, self._args)

    # -- admission --------------------------------------------------------------------------

    def _admit(self, period: _Period) -> Permit | CircuitOpen:
        while True:
            status = period.status
            state = status.state
            if state is CLOSED:
                return period
            now = self._monotonic()
            if state is OPEN and now < period.open_until:
                return self._open_error(period.open_until - now)
            tie: _Tie = period.tie
            if not self.shared.available():
                self._went_local("acquire")
                if state is HALF_OPEN and tie.synced:
                    # The trials were Redis's: run a half-open phase of this process's own.
                    local = Status(HALF_OPEN, status.epoch + 1, now, 0.0, status.trips)
                    period = self._move(period, local) or self._period
                    continue
                return super()._admit(period)
            if state is HALF_OPEN:
                if not tie.synced:
                    return super()._admit(period)  # a local half-open runs its course here
                if now < tie.recheck_at:
                    return self._rejection(HALF_OPEN, 0.0)
            try:
                tie.asking.pop()
            except IndexError:
                # Another caller of this process is asking Redis right now.
                return self._rejection(HALF_OPEN, 0.0)
            return _Pending(period)

    def _resolve(self, pending: _Pending) -> Permit | CircuitOpen:
        """Ask Redis for a permit (blocking) and answer as `_admit` would."""
        tie: _Tie = pending.period.tie
        try:
            answer = self._call(ACQUIRE, tie.epoch)
        finally:
            tie.asking.append(None)
        if not isinstance(answer, tuple):
            return self._admit(self._period)  # Redis failed: decided locally
        view, t0 = answer
        current = self._adopt(view, t0, answer=True)
        if view.admitted:
            if view.state is HALF_OPEN:
                return _SharedTrial(view.epoch)
            if current.status.state is CLOSED:
                return current
            return self._rejection(HALF_OPEN, 0.0)  # lost a race with a transition
        now_tie: _Tie = current.tie
        if view.state is OPEN:
            left = max(0.0, view.remaining)
            if now_tie.epoch == view.epoch and current.status.state is OPEN:
                # Asked a little early (the local deadline counts from when an earlier
                # request left): wait for the shared one before asking again.
                until = t0 + left
                if until > current.open_until:
                    current.status = replace(current.status, open_until=until)
                    current.open_until = until
            return CircuitBreaker._open_error(self, left)
        if now_tie.epoch == view.epoch:
            now_tie.recheck_at = t0 + self.shared.flush_interval
        return self._rejection(HALF_OPEN, 0.0)

    def _settle_pending(self, permit: Permit) -> Permit:
        while type(permit) is _Pending:
            answer = self._resolve(permit)
            if isinstance(answer, CircuitOpen):
                try:
                    raise answer
                finally:
                    del answer
            permit = answer
        return permit

    async def _asettle_pending(self, permit: Permit) -> Permit:
        while type(permit) is _Pending:
            pending = permit
            # Whoever takes this token first decides who returns an unused answer: the
            # worker when the caller was cancelled before it finished, else the caller.
            handoff = [True]
            future = self.shared.submit_call(partial(self._resolve_for, pending, handoff))
            if future is None:
                answer = self._resolve(pending)
            else:
                try:
                    answer = await asyncio.wrap_future(future)
                except asyncio.CancelledError:
                    if future.cancel():  # it never ran: the asking token is still out
                        tie: _Tie = pending.period.tie
                        tie.asking.append(None)
                    else:
                        try:
                            handoff.pop()  # the worker will return what it gets
                        except IndexError:  # it had finished: its answer is ours to return
                            future.add_done_callback(self._return_answer)
                    raise
            if isinstance(answer, CircuitOpen):
                try:
                    raise answer
                finally:
                    del answer
            permit = answer
        return permit

    def _resolve_for(self, pending: _Pending, handoff: list[bool]) -> Permit | CircuitOpen:
        answer = self._resolve(pending)
        try:
            handoff.pop()
        except IndexError:  # the caller was cancelled meanwhile
            self._return(answer)
        return answer

    def _return_answer(self, future: Future[Permit | CircuitOpen]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._return(future.result())

    def _return(self, answer: Permit | CircuitOpen) -> None:
        """An answer nobody will use: a trial permit goes back to Redis."""
        if type(answer) is _SharedTrial:
            self.release(answer)

    def _open_error(self, retry_after: float) -> CircuitOpen:
        # An OPEN process hears of nothing unless it asks: one refusal per flush interval
        # has a worker check (an operator's reset elsewhere, say).
        if self._monotonic() >= self.next_sync:
            self.sync_soon()
        return super()._open_error(retry_after)

    def acquire(self) -> Permit:
        period = self._period
        if period.ok is not None:
            return period
        return self._settle_pending(self._checked(self._admit(period)))

    async def aacquire(self) -> Permit:
        period = self._period
        if period.ok is not None:
            return period
        return await self._asettle_pending(self._checked(self._admit(period)))

    @staticmethod
    def _checked(permit: Permit | CircuitOpen) -> Permit:
        if isinstance(permit, CircuitOpen):
            try:
                raise permit
            finally:
                del permit
        return permit

    def _run(
        self, permit: Permit, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        if type(permit) is _Pending:
            permit = self._settle_pending(permit)
        return super()._run(permit, func, args, kwargs)

    async def _run_async(
        self,
        permit: Permit,
        func: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: Any,
    ) -> Any:
        if type(permit) is _Pending:
            permit = await self._asettle_pending(permit)
        return await super()._run_async(permit, func, args, kwargs)

    async def __aenter__(self) -> SharedCircuitBreaker:
        permit = await self.aacquire()
        self._held.set((*self._held.get(), (permit, self.clock.monotonic())))
        return self

    # -- outcomes ---------------------------------------------------------------------------

    def _settle_other(self, permit: Permit, bad: bool) -> None:
        if type(permit) is not _SharedTrial:
            return
        try:
            permit.once.pop()
        except IndexError:
            return
        epoch = permit.epoch
        shared = self.shared
        if shared.available():

            def job() -> None:
                answer = self._call(RECORD, epoch, (int(bad), 0, 0))
                if isinstance(answer, tuple):
                    self._adopt(*answer)
                else:
                    self._trial_alone(epoch, bad)

            if shared.submit(job):
                return
        else:
            self._went_local("record")
        self._trial_alone(epoch, bad)

    def _trial_alone(self, epoch: int, bad: bool) -> None:
        """Redis cannot take a trial's outcome: finish the half-open phase locally."""
        period = self._period
        tie: _Tie = period.tie
        status = period.status
        if status.state is not HALF_OPEN or not tie.synced or tie.epoch != epoch:
            return
        now = self._monotonic()
        local = Status(HALF_OPEN, status.epoch + 1, now, 0.0, status.trips, trials=1)
        self._move(period, machine.record(self.policy, local, now, local.epoch, failed=bad))

    def release(self, permit: Permit) -> None:
        if type(permit) is _SharedTrial:
            try:
                permit.once.pop()
            except IndexError:
                return
            self._background(RELEASE, permit.epoch, _NONE)
            return
        super().release(permit)

    # -- operators --------------------------------------------------------------------------

    def _operate_shared(self, op: str, change: Callable[[Status, float], Status]) -> None:
        while True:
            period = self._period
            before: _Tie = period.tie
            tie = _Tie(before.epoch, False, pushing=True)
            if self._move(period, change(period.status, self._monotonic()), tie) is not None:
                break
            time.sleep(0)  # a transition is landing on another thread: let it finish
        answer = self._call(op, None)
        tie.pushing = False
        if isinstance(answer, BackendUnavailable):
            raise BackendUnavailable(
                f"breaker {self.name!r}: {OPERATIONS[op]} applied in this process only; "
                f"the shared state could not be written: {answer}"
            ) from answer
        self._adopt(*answer)

    def force_open(self) -> None:
        """Reject every call in every process until `reset` or `force_closed`.

        Raises:
            BackendUnavailable: Redis failed; the breaker is forced open in this process.
        """
        self._operate_shared(FORCE_OPEN, machine.force_open)

    def force_closed(self) -> None:
        """Admit every call in every process and never trip, until `reset` or `force_open`.

        Raises:
            BackendUnavailable: Redis failed; the breaker is forced closed in this process.
        """
        self._operate_shared(FORCE_CLOSED, machine.force_closed)

    def reset(self) -> None:
        """A fresh CLOSED breaker in every process (each learns it at its next sync).

        Raises:
            BackendUnavailable: Redis failed; the breaker is reset in this process.
        """
        self._operate_shared(RESET, machine.reset)

    def stats(self) -> BreakerStats:
        stats = super().stats()
        period = self._period
        tie: _Tie = period.tie
        if stats.state is HALF_OPEN and tie.synced and period.status.state is HALF_OPEN:
            status = period.status
            return replace(stats, trials=status.trials, trials_passed=status.passed)
        return stats
