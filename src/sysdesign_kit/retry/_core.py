"""The schedule core: one `Run` per retried call decides, after each attempt, whether and
when to try again. Every driver (sync and async decorators, ``call``, both iterators) asks
it the same questions and only differs in how it sleeps and how it bounds an attempt.

The order of the checks after a failed attempt::

    CircuitOpen                                   -> give up "breaker_open" (never retried)
    TimeoutError once the deadline has passed     -> give up "deadline"
    exception not covered by ``on``               -> give up "not_retryable"
    no attempts left                              -> give up "attempts"
    delay = server delay (capped, no jitter) or the backoff schedule's next wait
    now + delay reaches the deadline              -> give up "deadline" (no sleep crosses it)
    the budget refuses a token                    -> give up "budget"
    otherwise                                     -> RetryAttempted, sleep ``delay``, retry
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sysdesign_kit.errors import CircuitOpen
from sysdesign_kit.events import RetryAttempted, RetryGaveUp
from sysdesign_kit.retry import testing
from sysdesign_kit.retry._guard import Guard
from sysdesign_kit.retry.attempt import _UNSET, Attempt, Outcome

if TYPE_CHECKING:
    from sysdesign_kit.retry.policy import Retry

__all__ = ["Run", "describe"]

#: A loop timer may fire this much before its time; a TimeoutError raised that close to the
#: deadline is the deadline's.
_SLACK = 0.001
_TEXT_LIMIT = 200


def describe(exception: BaseException | None, result: Any) -> str:
    """Short text for an event's ``error`` field."""
    try:
        if exception is not None:
            text = f"{type(exception).__name__}: {exception}"
        else:
            text = f"result {result!r}"
    except Exception:  # a __str__ / __repr__ that fails must not break the retry
        text = type(exception if exception is not None else result).__name__
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."


class Run:
    """The retry state of one call: which attempt it is on and when it started.

    Args:
        policy: the shared, read-only policy.
        target: the retried function (names events when the policy has no name), or None.
        start: the clock's monotonic reading when the call started; None reads it now.
        iterating: attempts are handed out by an iterator and used as context managers.
        is_async: attempts run on an event loop (the iterator arms a deadline guard).
    """

    __slots__ = (
        "deadline_at",
        "is_async",
        "iterating",
        "number",
        "planned",
        "policy",
        "previous",
        "start",
        "target",
    )

    def __init__(
        self,
        policy: Retry,
        target: object,
        start: float | None,
        *,
        iterating: bool = False,
        is_async: bool = False,
    ) -> None:
        self.policy = policy
        self.target = target
        self.start = policy.clock.monotonic() if start is None else start
        deadline = policy.deadline
        self.deadline_at = None if deadline is None else self.start + deadline
        self.number = 1
        self.previous = policy.backoff.wait_initial
        self.iterating = iterating
        self.is_async = is_async
        self.planned: float | None = None

    # -- attempts ---------------------------------------------------------------------

    def first(self) -> Attempt:
        """Attempt 1 (the iterator forms hand it out; decorators never build it)."""
        return self._attempt(0.0)

    def begin(self, delay: float) -> Attempt:
        """The next attempt, which ``delay`` seconds of waiting preceded."""
        self.number += 1
        return self._attempt(delay)

    def _attempt(self, delay: float) -> Attempt:
        return Attempt(
            self.number,
            delay,
            clock=self.policy.clock,
            start=self.start,
            deadline_at=self.deadline_at,
            run=self if self.iterating else None,
        )

    # -- decisions --------------------------------------------------------------------

    def after_exception(self, exc: Exception) -> float | None:
        """Seconds to wait before retrying after ``exc``, or None to give up (re-raise)."""
        if isinstance(exc, CircuitOpen):
            self._give_up("breaker_open", exc, None)
            return None
        deadline_at = self.deadline_at
        if (
            deadline_at is not None
            and isinstance(exc, TimeoutError)
            and self.policy.clock.monotonic() >= deadline_at - _SLACK
        ):
            self._give_up("deadline", exc, None)
            return None
        if not self.policy._retryable(exc):
            self._give_up("not_retryable", exc, None)
            return None
        return self._plan(exc, None)

    def after_result(self, result: Any) -> float | None:
        """Seconds to wait before retrying a result ``on_result`` matched, or None to give up
        (the caller then gets this result)."""
        return self._plan(None, result)

    def _plan(self, exception: Exception | None, result: Any) -> float | None:
        policy = self.policy
        instant, cap = testing.state
        limit = policy.attempts if cap is None or cap > policy.attempts else cap
        if self.number >= limit:
            self._give_up("attempts", exception, result)
            return None
        clock = policy.clock
        delay: float | None = None
        hook = policy.retry_after
        if hook is not None:
            server = hook(Outcome(self.number, exception, result, clock.time()))
            if server is not None and server >= 0.0:
                # The server knows best: no jitter on top, only the cap.
                delay = server if server < policy.retry_after_max else policy.retry_after_max
        if delay is None:
            delay = policy.backoff.delay(self.number, self.previous, policy._random)
            self.previous = delay
        if instant:
            delay = 0.0
        if self.deadline_at is not None and clock.monotonic() + delay >= self.deadline_at:
            self._give_up("deadline", exception, result)
            return None
        budget = policy.budget
        if budget is not None and not budget.try_withdraw():
            self._give_up("budget", exception, result)
            return None
        events = policy.events
        if events.listeners:
            name = self._name()
            events.publish(
                RetryAttempted(
                    component=f"retry:{name}",
                    name=name,
                    attempt=self.number,
                    delay=delay,
                    error=describe(exception, result),
                )
            )
        return delay

    def _give_up(self, reason: str, exception: BaseException | None, result: Any) -> None:
        events = self.policy.events
        if events.listeners:
            name = self._name()
            events.publish(
                RetryGaveUp(
                    component=f"retry:{name}",
                    name=name,
                    attempts=self.number,
                    error=describe(exception, result),
                    reason=reason,
                )
            )

    def _name(self) -> str:
        name = self.policy.name
        if name is not None:
            return name
        target = self.target
        if target is None:
            return "retry"
        module = getattr(target, "__module__", None)
        qualname = getattr(target, "__qualname__", None) or repr(target)
        return f"{module}.{qualname}" if module else qualname

    # -- the iterator forms' context manager -------------------------------------------

    def enter(self, attempt: Attempt) -> None:
        """Start an attempt: on an event loop with a deadline, arm its guard."""
        self.planned = None
        if self.is_async and self.deadline_at is not None:
            clock = self.policy.clock
            attempt._guard = Guard.arm(self.deadline_at - clock.monotonic(), clock)

    def exit(self, attempt: Attempt, exc: BaseException | None) -> bool:
        """End an attempt; True suppresses ``exc`` because a retry is planned."""
        guard = attempt._guard
        if guard is not None:
            attempt._guard = None
            if guard.release() and isinstance(exc, asyncio.CancelledError):
                timeout = TimeoutError(
                    f"attempt {attempt.number} was cut off at the retry deadline"
                )
                self._give_up("deadline", timeout, None)
                raise timeout from exc
        if exc is None:
            on_result = self.policy.on_result
            value = attempt._result
            if on_result is not None and value is not _UNSET and on_result(value):
                self.planned = self.after_result(value)
            return False
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit, CancelledError
            return False
        self.planned = self.after_exception(exc)
        return self.planned is not None

    def take_plan(self) -> float | None:
        """The wait planned by the last attempt's exit, or None when iteration is over."""
        planned, self.planned = self.planned, None
        return planned
