"""The blocking drivers: decorator, ``Retry.call`` and the ``for attempt in policy`` iterator.

The first try is the hot path: one clock read when a deadline is set (so the deadline
counts from the start of the call), a deposit when a budget is attached, one context
variable lookup (to hide an enclosing retry's attempt), then the call. Everything else (the
`Run`, attempts, events) exists only after a failure.

A sync attempt cannot be interrupted: it sees the time left through
``current_attempt().remaining`` (or the iterator's attempt) and should use it as its own
timeout; no sleep is started that would cross the deadline.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sysdesign_kit.retry._core import Run
from sysdesign_kit.retry.attempt import _CURRENT, Attempt

if TYPE_CHECKING:
    from sysdesign_kit.retry.policy import Retry

__all__ = ["SyncAttempts", "sync_call", "sync_wrapper"]

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


def sync_wrapper(policy: Retry, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` retried by ``policy`` (its signature and metadata kept)."""
    monotonic = policy.clock.monotonic
    has_deadline = policy.deadline is not None
    budget = policy.budget
    # The budget can reuse the deadline's clock reading when both read the same clock.
    share = budget is not None and has_deadline and budget.clock is policy.clock
    on_result = policy.on_result
    get_current = _CURRENT.get

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = monotonic() if has_deadline else None
        if budget is not None:
            budget.deposit(start if share else None)
        if get_current() is not None:
            return _masked(policy, fn, args, kwargs, start)
        # The body of _first, inlined: a frame less on every call.
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            run = Run(policy, fn, start)
            delay = run.after_exception(exc)
            if delay is None:
                raise
        else:
            if on_result is None or not on_result(result):
                return result
            run = Run(policy, fn, start)
            delay = run.after_result(result)
            if delay is None:
                return result
        return _retry(run, fn, args, kwargs, delay)

    return wrapper


def sync_call(policy: Retry, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
    """``fn(*args, **kwargs)`` retried by ``policy``."""
    start = policy.clock.monotonic() if policy.deadline is not None else None
    budget = policy.budget
    if budget is not None:
        budget.deposit()
    if _CURRENT.get() is not None:
        return _masked(policy, fn, args, kwargs, start)
    return _first(policy, fn, args, kwargs, start)


def _masked(
    policy: Retry, fn: Callable[..., Any], args: Args, kwargs: Kwargs, start: float | None
) -> Any:
    # Called from inside another retried call: its attempt must not show through ours.
    token = _CURRENT.set(None)
    try:
        return _first(policy, fn, args, kwargs, start)
    finally:
        _CURRENT.reset(token)


def _first(
    policy: Retry, fn: Callable[..., Any], args: Args, kwargs: Kwargs, start: float | None
) -> Any:
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        run = Run(policy, fn, start)
        delay = run.after_exception(exc)
        if delay is None:
            raise
    else:
        on_result = policy.on_result
        if on_result is None or not on_result(result):
            return result
        run = Run(policy, fn, start)
        delay = run.after_result(result)
        if delay is None:
            return result
    return _retry(run, fn, args, kwargs, delay)


def _retry(run: Run, fn: Callable[..., Any], args: Args, kwargs: Kwargs, delay: float) -> Any:
    """Attempts 2, 3... after a first try that asked for a retry in ``delay`` seconds."""
    policy = run.policy
    sleep = policy.sleep
    on_result = policy.on_result
    while True:
        if delay > 0.0:
            sleep(delay)
        token = _CURRENT.set(run.begin(delay))
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            next_delay = run.after_exception(exc)
            if next_delay is None:
                raise  # the caller's own exception, as it was raised
            delay = next_delay
            continue
        finally:
            _CURRENT.reset(token)
        if on_result is None or not on_result(result):
            return result
        next_delay = run.after_result(result)
        if next_delay is None:
            return result
        delay = next_delay


class SyncAttempts:
    """``for attempt in policy: with attempt: ...`` — one iteration per attempt."""

    __slots__ = ("_policy", "_run")

    def __init__(self, policy: Retry) -> None:
        self._policy = policy
        self._run: Run | None = None

    def __iter__(self) -> SyncAttempts:
        return self

    def __next__(self) -> Attempt:
        run = self._run
        if run is None:
            policy = self._policy
            run = self._run = Run(policy, None, None, iterating=True)
            if policy.budget is not None:
                policy.budget.deposit()
            return run.first()
        delay = run.take_plan()
        if delay is None:
            raise StopIteration
        if delay > 0.0:
            run.policy.sleep(delay)
        return run.begin(delay)
