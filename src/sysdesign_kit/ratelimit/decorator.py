"""``@rate_limited(limiter, ...)`` (also ``@limiter.limit(...)``) for sync and async functions.

A denied call raises `RateLimited` carrying ``retry_after`` and the decision, or, with
``wait=True``, waits until the limiter allows it (up to ``max_wait``) and then runs.

Waiting reads the limiter's clock. Async functions sleep with ``clock.sleep`` (a
`ManualClock` releases them on ``advance``). Sync functions cannot await, so they sleep with
``time.sleep`` on the `SystemClock` and, on a `ManualClock`, advance the clock by the wait
instead: a test of a waiting sync function runs instantly and sees the time it would have
waited. Any other clock cannot make a sync function wait, which is refused at decoration.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sysdesign_kit.clock import Clock, ManualClock, SystemClock
from sysdesign_kit.errors import ConfigurationError, RateLimited
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.keys import safe_key
from sysdesign_kit.ratelimit.limiter import RateLimiter

__all__ = ["rate_limited"]

F = TypeVar("F", bound=Callable[..., Any])


def rate_limited(
    limiter: RateLimiter,
    *,
    key: str | Callable[..., str] | None = None,
    cost: int | Callable[..., int] = 1,
    wait: bool = False,
    max_wait: float | None = None,
) -> Callable[[F], F]:
    """Limit calls of the decorated function with ``limiter``.

    Args:
        limiter: the policy to charge.
        key: the bucket: a constant string, or a callable given the call's arguments that
            returns one (e.g. ``lambda user_id, **_: user_id``). Default: the function's
            qualified name, so each decorated function has its own bucket.
        cost: weight of one call: an int, or a callable given the call's arguments.
        wait: wait until allowed instead of raising.
        max_wait: with ``wait``, the longest total wait in seconds; a call that would wait
            longer raises `RateLimited` at once, without waiting. None: no bound.

    Raises:
        ConfigurationError: bad ``max_wait``, or ``wait=True`` on a sync function with a
            clock that is neither `SystemClock` nor `ManualClock`.
        RateLimited: (from the decorated function) the call was denied.
    """
    if max_wait is not None and not max_wait >= 0:
        raise ConfigurationError(f"max_wait must be None or >= 0 seconds, got {max_wait!r}")

    def decorate(func: F) -> F:
        default_key = safe_key("", f"{func.__module__}.{func.__qualname__}")
        key_of = _key_function(key, default_key)
        cost_of = (lambda *a, **k: cost) if isinstance(cost, int) else cost
        if inspect.iscoroutinefunction(func):
            return cast(F, _async_wrapper(func, limiter, key_of, cost_of, wait, max_wait))
        sleep = _sync_sleep(limiter.clock) if wait else None
        return cast(F, _sync_wrapper(func, limiter, key_of, cost_of, sleep, max_wait))

    return decorate


def _key_function(key: str | Callable[..., str] | None, default: str) -> Callable[..., str]:
    if key is None:
        return lambda *args, **kwargs: default
    if isinstance(key, str):
        return lambda *args, **kwargs: key
    if callable(key):
        return key
    raise ConfigurationError(f"key must be a str or a callable, got {type(key).__name__}")


def _sync_sleep(clock: Clock) -> Callable[[float], None]:
    if isinstance(clock, ManualClock):
        return clock.advance
    if isinstance(clock, SystemClock):
        return time.sleep
    raise ConfigurationError(
        f"wait=True on a sync function needs a SystemClock or ManualClock, got "
        f"{type(clock).__name__} (a sync function cannot await clock.sleep)"
    )


def _denied(limiter: RateLimiter, key: str, decision: RateLimitDecision) -> RateLimited:
    return RateLimited(
        f"rate limit {limiter.name!r} exceeded for {key!r}; retry after "
        f"{decision.retry_after:.3f} s",
        retry_after=decision.retry_after,
        decision=decision,
    )


def _wait_for(
    limiter: RateLimiter,
    key: str,
    decision: RateLimitDecision,
    started: float,
    max_wait: float | None,
) -> float:
    """Seconds to sleep before trying again, or raise when that would exceed ``max_wait``."""
    # A blocked decision always has a positive wait; the floor only guards against a
    # backend answering 0, which would otherwise spin.
    delay = max(decision.retry_after, 0.000_001)
    if max_wait is not None and limiter.clock.monotonic() - started + delay > max_wait:
        raise _denied(limiter, key, decision)
    return delay


def _async_wrapper(
    func: Callable[..., Any],
    limiter: RateLimiter,
    key_of: Callable[..., str],
    cost_of: Callable[..., int],
    wait: bool,
    max_wait: float | None,
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = key_of(*args, **kwargs)
        cost = cost_of(*args, **kwargs)
        started = limiter.clock.monotonic()
        while True:
            decision = await limiter.hit(key, cost)
            if not decision.blocked:
                return await func(*args, **kwargs)
            if not wait:
                raise _denied(limiter, key, decision)
            await limiter.clock.sleep(_wait_for(limiter, key, decision, started, max_wait))

    return wrapper


def _sync_wrapper(
    func: Callable[..., Any],
    limiter: RateLimiter,
    key_of: Callable[..., str],
    cost_of: Callable[..., int],
    sleep: Callable[[float], None] | None,
    max_wait: float | None,
) -> Callable[..., Any]:
    sync = limiter.sync

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = key_of(*args, **kwargs)
        cost = cost_of(*args, **kwargs)
        started = limiter.clock.monotonic()
        while True:
            decision = sync.hit(key, cost)
            if not decision.blocked:
                return func(*args, **kwargs)
            if sleep is None:
                raise _denied(limiter, key, decision)
            sleep(_wait_for(limiter, key, decision, started, max_wait))

    return wrapper
