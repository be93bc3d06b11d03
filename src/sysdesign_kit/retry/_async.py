"""The async drivers: decorator, ``Retry.acall`` and the ``async for attempt in policy``
iterator.

Same hot path as the sync driver, plus the deadline: with one set, the wrapper starts the
attempt's coroutine itself and hands it to `bounded` only if it suspends, which then cuts
it off at the deadline (see ``_guard``). Waits go through ``policy.clock.sleep``.

The deadline clock starts lazily, when the first attempt first waits (or fails): a call that
completes without waiting reads no clock at all. What this leaves uncounted is the
synchronous stretch before the first ``await`` that suspends, which holds the event loop
and which no timeout could interrupt anyway; the iterator form, off the hot path, reads
the clock when iteration starts.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from sysdesign_kit.clock import Clock
from sysdesign_kit.retry._core import Run
from sysdesign_kit.retry._guard import bounded
from sysdesign_kit.retry.attempt import _CURRENT, Attempt

if TYPE_CHECKING:
    from sysdesign_kit.retry.policy import Retry

__all__ = ["AsyncAttempts", "async_call", "async_wrapper"]

Args = tuple[Any, ...]
Kwargs = dict[str, Any]
AsyncFn = Callable[..., Coroutine[Any, Any, Any]]


def async_wrapper(policy: Retry, fn: AsyncFn) -> Callable[..., Awaitable[Any]]:
    """``fn`` retried by ``policy`` (its signature and metadata kept)."""
    clock = policy.clock
    monotonic = clock.monotonic
    budget = policy.budget
    on_result = policy.on_result
    get_current = _CURRENT.get
    deadline = policy.deadline

    if deadline is None:

        @functools.wraps(fn)
        async def unbounded(*args: Any, **kwargs: Any) -> Any:
            if budget is not None:
                budget.deposit()
            if get_current() is not None:
                return await _masked(policy, fn, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                run = Run(policy, fn, None)
                delay = run.after_exception(exc)
                if delay is None:
                    raise
            else:
                if on_result is None or not on_result(result):
                    return result
                run = Run(policy, fn, None)
                delay = run.after_result(result)
                if delay is None:
                    return result
            return await _retry(run, fn, args, kwargs, delay)

        return unbounded

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if budget is not None:
            budget.deposit()
        if get_current() is not None:
            return await _masked(policy, fn, args, kwargs)
        # The body of _first, inlined: a frame less on every call.
        start = None
        try:
            coro = fn(*args, **kwargs)
            try:
                signal = coro.send(None)
            except StopIteration as stop:  # done without ever waiting: nothing to bound
                result = stop.value
            else:
                start = monotonic()
                result = await bounded(coro, signal, clock, start + deadline, 1)
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
        return await _retry(run, fn, args, kwargs, delay)

    return wrapper


async def async_call(policy: Retry, fn: AsyncFn, args: Args, kwargs: Kwargs) -> Any:
    """``await fn(*args, **kwargs)`` retried by ``policy``."""
    budget = policy.budget
    if budget is not None:
        budget.deposit()
    if _CURRENT.get() is not None:
        return await _masked(policy, fn, args, kwargs)
    return await _first(policy, fn, args, kwargs)


async def _masked(policy: Retry, fn: AsyncFn, args: Args, kwargs: Kwargs) -> Any:
    # Called from inside another retried call: its attempt must not show through ours.
    token = _CURRENT.set(None)
    try:
        return await _first(policy, fn, args, kwargs)
    finally:
        _CURRENT.reset(token)


async def _first(policy: Retry, fn: AsyncFn, args: Args, kwargs: Kwargs) -> Any:
    clock = policy.clock
    deadline = policy.deadline
    start = None
    try:
        if deadline is None:
            result = await fn(*args, **kwargs)
        else:
            coro = _coroutine(fn(*args, **kwargs))
            try:
                signal = coro.send(None)
            except StopIteration as stop:
                result = stop.value
            else:
                start = clock.monotonic()
                result = await bounded(coro, signal, clock, start + deadline, 1)
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
    return await _retry(run, fn, args, kwargs, delay)


async def _attempt(
    fn: AsyncFn, args: Args, kwargs: Kwargs, clock: Clock, deadline_at: float | None, number: int
) -> Any:
    """A retry: bounded by the deadline (armed when it first waits) if there is one."""
    if deadline_at is None:
        return await fn(*args, **kwargs)
    coro = _coroutine(fn(*args, **kwargs))
    try:
        signal = coro.send(None)
    except StopIteration as stop:
        return stop.value
    return await bounded(coro, signal, clock, deadline_at, number)


async def _retry(run: Run, fn: AsyncFn, args: Args, kwargs: Kwargs, delay: float) -> Any:
    """Attempts 2, 3... after a first try that asked for a retry in ``delay`` seconds."""
    policy = run.policy
    clock = policy.clock
    on_result = policy.on_result
    while True:
        await clock.sleep(delay)  # also at 0 (instant testing): other tasks get a turn
        attempt = run.begin(delay)
        token = _CURRENT.set(attempt)
        try:
            result = await _attempt(fn, args, kwargs, clock, run.deadline_at, attempt.number)
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


def _coroutine(awaitable: Awaitable[Any]) -> Coroutine[Any, Any, Any]:
    """``awaitable`` as a coroutine we can step (``acall`` accepts futures and tasks too)."""
    if inspect.iscoroutine(awaitable):
        return awaitable
    return _await(awaitable)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class AsyncAttempts:
    """``async for attempt in policy: with attempt: ...`` — one iteration per attempt.

    With a deadline, ``with attempt:`` cuts the block off at the deadline (TimeoutError).
    """

    __slots__ = ("_policy", "_run")

    def __init__(self, policy: Retry) -> None:
        self._policy = policy
        self._run: Run | None = None

    def __aiter__(self) -> AsyncAttempts:
        return self

    async def __anext__(self) -> Attempt:
        run = self._run
        if run is None:
            policy = self._policy
            run = self._run = Run(policy, None, None, iterating=True, is_async=True)
            if policy.budget is not None:
                policy.budget.deposit()
            return run.first()
        delay = run.take_plan()
        if delay is None:
            raise StopAsyncIteration
        await run.policy.clock.sleep(delay)
        return run.begin(delay)
