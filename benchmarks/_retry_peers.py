"""The contenders of the retry benchmark, each configured like our default policy.

Every contender retries ``ConnectionError`` for 4 attempts in all, with exponential waits
from 1 s capped at 30 s and jitter, and a 60 s total limit where the library has one:

- ours: ``Retry(on=ConnectionError)`` (the defaults: attempts=4, deadline=60, full jitter);
- tenacity: ``stop_after_attempt(4) | stop_after_delay(60)``, ``wait_random_exponential``,
  ``retry_if_exception_type``, ``reraise=True`` (so it raises the caller's exception too);
- backoff: ``on_exception(expo, ConnectionError, max_tries=4, max_time=60, logger=None)``
  (full jitter is its default);
- stamina: ``retry(on=ConnectionError, attempts=4, timeout=60, wait_initial=1,
  wait_max=30)`` with its instrumentation hooks removed (`quiet`), as ours runs without
  listeners: by default it would log every retry and count it in prometheus-client;
- floor: a hand-written ``for``/``try``/``except`` loop around the call, no waiting logic:
  the least any retry decorator can cost;
- bare: the function itself.

For the retry path (one failure, then success) every contender waits zero seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import stamina
import tenacity

from sysdesign_kit.retry import Retry, RetryBudget

Sync = Callable[[str], object]
Async = Callable[[str], Awaitable[object]]


def target(key: str) -> str:
    return key


async def atarget(key: str) -> str:
    return key


def floor(fn: Sync) -> Sync:
    def retried(key: str) -> object:
        for attempt in range(4):
            try:
                return fn(key)
            except ConnectionError:
                if attempt == 3:
                    raise
        return None  # pragma: no cover - the loop returns or raises

    return retried


def afloor(fn: Async) -> Async:
    async def retried(key: str) -> object:
        for attempt in range(4):
            try:
                return await fn(key)
            except ConnectionError:
                if attempt == 3:
                    raise
        return None  # pragma: no cover - the loop returns or raises

    return retried


def decorators(zero_wait: bool = False) -> dict[str, Callable[[Any], Any]]:
    """name -> decorator, for sync and async functions alike."""
    wait_initial = 0.0 if zero_wait else 1.0
    return {
        "ours": Retry(on=ConnectionError, wait_initial=wait_initial),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(4) | tenacity.stop_after_delay(60),
            wait=tenacity.wait_none()
            if zero_wait
            else tenacity.wait_random_exponential(multiplier=1, max=30),
            retry=tenacity.retry_if_exception_type(ConnectionError),
            reraise=True,
        ),
        "backoff": backoff.on_exception(
            backoff.constant if zero_wait else backoff.expo,
            ConnectionError,
            max_tries=4,
            max_time=60,
            logger=None,
            **({"interval": 0} if zero_wait else {}),
        ),
        "stamina": stamina.retry(
            on=ConnectionError,
            attempts=4,
            timeout=60.0,
            wait_initial=wait_initial,
            wait_max=0.0 if zero_wait else 30.0,
            wait_jitter=0.0 if zero_wait else 1.0,
        ),
    }


def quiet() -> None:
    """Remove stamina's logging and Prometheus hooks (process-wide; benchmarks only)."""
    stamina.instrumentation.set_on_retry_hooks([])


def our_variants() -> dict[str, Callable[[Any], Any]]:
    """Our policy with the deadline off, and with a retry budget attached."""
    return {
        "ours, deadline=None": Retry(on=ConnectionError, deadline=None),
        "ours + RetryBudget": Retry(on=ConnectionError, budget=RetryBudget()),
    }


def flaky(times: int = 1) -> tuple[Sync, Async]:
    """A sync and an async target failing every other call (once before each success)."""
    state = {"n": 0}

    def sync(key: str) -> str:
        state["n"] += 1
        if state["n"] % (times + 1):
            raise ConnectionError(key)
        return key

    async def asynchronous(key: str) -> str:
        return sync(key)

    return sync, asynchronous
