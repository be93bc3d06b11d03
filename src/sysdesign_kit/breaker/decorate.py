"""``@breaker`` and ``@breaker(fallback=...)``: thin wrappers over the breaker's primitive.

A coroutine function gets an ``async def`` wrapper, anything else a plain one; both keep the
wrapped function's name, docstring and signature (``functools.wraps``; typed with
``ParamSpec`` on `CircuitBreaker.__call__`).

The wrappers read the breaker's current period once. While it is CLOSED, nobody listens,
and neither slow calls nor result checks are configured, they call the function and record
its success with one C-level call into the window (no lock, no clock, no allocation);
everything else goes through `CircuitBreaker.call` / `call_async`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from sysdesign_kit.breaker.breaker import CircuitBreaker
from sysdesign_kit.breaker.classify import FAILURE
from sysdesign_kit.breaker.fallbacks import Fallback, FallbackArg, as_fallback
from sysdesign_kit.errors import CircuitOpen

__all__ = ["protect"]

P = ParamSpec("P")
R = TypeVar("R")


def protect(
    breaker: CircuitBreaker, func: Callable[P, R], fallback: FallbackArg | None = None
) -> Callable[P, R]:
    """Wrap ``func`` (sync or async) with ``breaker`` and, if given, a fallback."""
    if not callable(func):
        raise TypeError(f"@{breaker.name}: expected a function, got {func!r}")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        # Calling one only creates the generator: the breaker would see every call succeed.
        raise TypeError(
            f"@{breaker.name}: {func.__qualname__} is a generator function; protect the code "
            "that consumes it with `with breaker:` / `async with breaker:` instead"
        )
    is_async = inspect.iscoroutinefunction(func)
    wrapped = _async(breaker, func) if is_async else _sync(breaker, func)
    if fallback is not None:
        answer = as_fallback(fallback)
        wrapped = (_async_fallback if is_async else _sync_fallback)(breaker, wrapped, answer)
    return cast(Callable[P, R], wrapped)


def _sync(breaker: CircuitBreaker, func: Callable[..., Any]) -> Callable[..., Any]:
    run = breaker._run
    admit = breaker._admit
    monotonic = breaker._monotonic
    open_error = breaker._open_error
    if not breaker.lean:

        @functools.wraps(func)
        def checked(*args: Any, **kwargs: Any) -> Any:
            period = breaker._period
            if period.ok is None:
                now = monotonic()
                if now < period.open_until:
                    raise open_error(period.open_until - now)
                permit = admit(period)
                if isinstance(permit, CircuitOpen):
                    try:
                        raise permit
                    finally:
                        del permit  # else frame -> traceback -> error is a cycle
                return run(permit, func, args, kwargs)
            return run(period, func, args, kwargs)

        return checked

    events = breaker.events
    on_error = breaker.on_error

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        period = breaker._period
        ok = period.ok
        if ok is None:
            now = monotonic()
            if now < period.open_until:
                raise open_error(period.open_until - now)
            permit = admit(period)
            if isinstance(permit, CircuitOpen):
                try:
                    raise permit
                finally:
                    del permit  # else frame -> traceback -> error is a cycle
            return run(permit, func, args, kwargs)
        if events.listeners:
            return run(period, func, args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            on_error(period, error)
            raise
        ok()
        return result

    return wrapper


def _async(breaker: CircuitBreaker, func: Callable[..., Any]) -> Callable[..., Any]:
    run = breaker._run_async
    admit = breaker._admit
    monotonic = breaker._monotonic
    open_error = breaker._open_error
    if not breaker.lean:

        @functools.wraps(func)
        async def checked(*args: Any, **kwargs: Any) -> Any:
            period = breaker._period
            if period.ok is None:
                now = monotonic()
                if now < period.open_until:
                    raise open_error(period.open_until - now)
                permit = admit(period)
                if isinstance(permit, CircuitOpen):
                    try:
                        raise permit
                    finally:
                        del permit  # else frame -> traceback -> error is a cycle
                return await run(permit, func, args, kwargs)
            return await run(period, func, args, kwargs)

        return checked

    events = breaker.events
    on_error = breaker.on_error

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        period = breaker._period
        ok = period.ok
        if ok is None:
            now = monotonic()
            if now < period.open_until:
                raise open_error(period.open_until - now)
            permit = admit(period)
            if isinstance(permit, CircuitOpen):
                try:
                    raise permit
                finally:
                    del permit  # else frame -> traceback -> error is a cycle
            return await run(permit, func, args, kwargs)
        if events.listeners:
            return await run(period, func, args, kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException as error:
            on_error(period, error)
            raise
        ok()
        return result

    return wrapper


def _sync_fallback(
    breaker: CircuitBreaker, inner: Callable[..., Any], fallback: Fallback[Any]
) -> Callable[..., Any]:
    classify = breaker.classifier.exception
    remember = fallback.remember if fallback.remembers else None

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = inner(*args, **kwargs)
        except BaseException as error:
            if isinstance(error, CircuitOpen) or classify(error) == FAILURE:
                return fallback(error, args, kwargs)
            raise
        if remember is not None:
            remember(args, kwargs, result)
        return result

    return wrapper


def _async_fallback(
    breaker: CircuitBreaker, inner: Callable[..., Any], fallback: Fallback[Any]
) -> Callable[..., Any]:
    classify = breaker.classifier.exception
    remember = fallback.remember if fallback.remembers else None

    @functools.wraps(inner)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await inner(*args, **kwargs)
        except BaseException as error:
            if isinstance(error, CircuitOpen) or classify(error) == FAILURE:
                answer = fallback(error, args, kwargs)
                if inspect.isawaitable(answer):
                    answer = await answer
                return answer
            raise
        if remember is not None:
            remember(args, kwargs, result)
        return result

    return wrapper
