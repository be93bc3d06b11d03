"""`Retry`: one retry policy, used as a decorator, a direct call or an iterator.

::

    policy = Retry(on=ConnectionError)              # 4 attempts: 1 s, 2 s, 4 s (full jitter)

    @policy                                         # or @retry(on=ConnectionError)
    async def fetch(url: str) -> bytes: ...

    data = policy.call(read_file, path)             # direct call, sync
    data = await policy.acall(fetch, url)           # direct call, async

    for attempt in policy:                          # or: async for attempt in policy
        with attempt:
            response = send(timeout=attempt.remaining)
            attempt.result = response               # lets on_result see it

The policy is read-only once built and shared freely between threads, tasks and functions;
each call keeps its own attempts (see `current_attempt`).
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar, cast

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock, ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import Listener, Publisher
from sysdesign_kit.retry._async import AsyncAttempts, async_call, async_wrapper
from sysdesign_kit.retry._config import check_int, check_seconds
from sysdesign_kit.retry._sync import SyncAttempts, sync_call, sync_wrapper
from sysdesign_kit.retry.attempt import Attempt, Outcome
from sysdesign_kit.retry.backoff import Backoff, JitterName
from sysdesign_kit.retry.budget import RetryBudget
from sysdesign_kit.retry.retry_after import default_retry_after

__all__ = ["ExceptionTypes", "Retry", "RetryAfterHook", "retry"]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
T = TypeVar("T")

#: What ``on=`` accepts: exception classes, or a predicate over the raised exception.
ExceptionTypes = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
#: Finds a server-given delay (seconds) on an attempt's outcome, or None.
RetryAfterHook = Callable[[Outcome], float | None]


class Retry:
    """A retry policy: which failures to retry, how often, how long to wait, and when to stop.

    Args:
        on: what to retry (required: nothing is retried by default): an exception class, a
            tuple of them, or a predicate ``(exception) -> bool``. Only ``Exception``
            subclasses: KeyboardInterrupt, SystemExit and CancelledError are never retried,
            and neither is `CircuitOpen` (an open breaker is a "no", not a failure). ``()``
            is allowed only with ``on_result`` (retry on results alone).
        on_result: retry when this returns True for a result (e.g. a 502/503/504 response).
            When it still matches after the last attempt, that last result is returned.
        attempts: calls in all, the first one included (>= 1).
        wait_initial: the backoff ceiling before the first retry, in seconds.
        wait_multiplier: ceiling growth per retry (>= 1).
        wait_max: the longest single backoff wait, in seconds.
        jitter: ``"full"`` (default), ``"equal"``, ``"decorrelated"`` or ``"none"``.
        deadline: seconds the whole call may take, attempts and waits included (None: no
            deadline). No wait is started that would reach it; async attempts are cut off at
            it (TimeoutError); sync attempts can read what is left.
        retry_after: finds a server-given delay on an outcome (default: a ``retry_after``
            attribute or a ``Retry-After`` header, see `default_retry_after`); None ignores
            servers. A server delay replaces the backoff wait, gets no jitter, and is capped.
        retry_after_max: the longest server-given delay honoured, in seconds.
        budget: a `RetryBudget` shared by everything that calls the same dependency.
        name: names the policy in events (default: the retried function's qualified name).
        clock: time source for the deadline, async sleeps and HTTP-dates.
        sleep: how sync retries wait (default ``time.sleep``; ``clock.advance`` on a
            `ManualClock`, so sync tests run instantly and see the time pass).
        rng: the random source for jitter (seed one for reproducible schedules).
        listeners: callables receiving `RetryAttempted` and `RetryGaveUp` events.

    Raises:
        ConfigurationError: any argument out of range or of the wrong kind (the message
            names it).
    """

    __slots__ = (
        "_options",
        "_random",
        "_retryable",
        "attempts",
        "backoff",
        "budget",
        "clock",
        "deadline",
        "events",
        "name",
        "on",
        "on_result",
        "retry_after",
        "retry_after_max",
        "rng",
        "sleep",
    )

    def __init__(
        self,
        *,
        on: ExceptionTypes,
        on_result: Callable[[Any], bool] | None = None,
        attempts: int = 4,
        wait_initial: float = 1.0,
        wait_multiplier: float = 2.0,
        wait_max: float = 30.0,
        jitter: JitterName = "full",
        deadline: float | None = 60.0,
        retry_after: RetryAfterHook | None = default_retry_after,
        retry_after_max: float = 30.0,
        budget: RetryBudget | None = None,
        name: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        listeners = tuple(listeners)  # an iterator would be spent by the first use
        self._options: dict[str, Any] = {
            key: value for key, value in locals().items() if key not in ("self", "__class__")
        }
        if on_result is not None and not callable(on_result):
            raise ConfigurationError(f"on_result must be a callable, got {on_result!r}")
        self.on = on
        self.on_result = on_result
        self._retryable = _classifier(on, on_result is not None)
        self.attempts = check_int(
            "attempts", attempts, minimum=1, why="it counts calls, the first one included"
        )
        self.backoff = Backoff(wait_initial, wait_multiplier, wait_max, jitter)
        self.deadline = (
            None if deadline is None else check_seconds("deadline", deadline, positive=True)
        )
        if retry_after is not None and not callable(retry_after):
            raise ConfigurationError(f"retry_after must be a callable or None, got {retry_after!r}")
        self.retry_after = retry_after
        self.retry_after_max = check_seconds("retry_after_max", retry_after_max)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigurationError(f"budget must be a RetryBudget, got {budget!r}")
        self.budget = budget
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 200):
            raise ConfigurationError(f"name must be 1..200 characters, got {name!r}")
        self.name = name
        if not isinstance(clock, Clock):
            raise ConfigurationError(f"clock must be a Clock, got {clock!r}")
        self.clock = clock
        if sleep is None:
            sleep = clock.advance if isinstance(clock, ManualClock) else time.sleep
        elif not callable(sleep):
            raise ConfigurationError(f"sleep must be a callable, got {sleep!r}")
        self.sleep = sleep
        if rng is not None and not isinstance(rng, random.Random):
            raise ConfigurationError(f"rng must be a random.Random, got {rng!r}")
        self.rng = rng if rng is not None else random.Random()
        self._random = self.rng.random
        self.events = Publisher(listeners)

    def __repr__(self) -> str:
        b = self.backoff
        return (
            f"Retry(on={self.on!r}, attempts={self.attempts}, wait_initial={b.wait_initial}, "
            f"wait_multiplier={b.wait_multiplier}, wait_max={b.wait_max}, "
            f"jitter={b.jitter!r}, deadline={self.deadline}, name={self.name!r})"
        )

    def replace(self, **changes: Any) -> Retry:
        """A new policy with the same arguments except ``changes`` (e.g. a budget per host).

        Raises:
            ConfigurationError: a changed value is invalid.
            TypeError: an unknown argument name.
        """
        return Retry(**{**self._options, **changes})

    # -- the three ways in ----------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        """Decorate a sync or async function: calls to it are retried by this policy.

        Raises:
            ConfigurationError: ``fn`` is a generator or async generator function (calling
                one only creates the generator, so there would be nothing to retry).
        """
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ConfigurationError(
                f"cannot retry generator function {fn.__qualname__}: calling it only "
                "creates the generator"
            )
        if inspect.iscoroutinefunction(fn):
            return cast(F, async_wrapper(self, fn))
        return cast(F, sync_wrapper(self, fn))

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, retried.

        Returns:
            What the successful attempt returned (or the last result ``on_result`` still
            matched when attempts ran out).

        Raises:
            Exception: the last attempt's own exception, not wrapped.
            TypeError: ``fn`` is a coroutine function (use `acall`).
        """
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"Retry.call got coroutine function {fn.__qualname__}: "
                "use 'await policy.acall(...)'"
            )
        return cast(T, sync_call(self, fn, args, kwargs))

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)``, retried; attempts are cut off at the deadline.

        ``fn`` may return any awaitable (a coroutine, a future, a task).

        Raises:
            Exception: the last attempt's own exception, not wrapped.
            TimeoutError: an attempt was still running at the deadline.
        """
        return cast(T, await async_call(self, cast(Any, fn), args, kwargs))

    def __iter__(self) -> Iterator[Attempt]:
        """Attempts for a ``for`` loop; run each inside ``with attempt:``."""
        return SyncAttempts(self)

    def __aiter__(self) -> AsyncIterator[Attempt]:
        """Attempts for an ``async for`` loop; ``with attempt:`` cuts one off at the deadline."""
        return AsyncAttempts(self)


#: ``@retry(on=ConnectionError)`` reads best as a decorator; it is the `Retry` class itself.
retry = Retry


def _classifier(on: object, has_result_predicate: bool) -> Callable[[Exception], bool]:
    """Turn ``on=`` into a predicate over exceptions, refusing what must not be retried."""
    if isinstance(on, type | tuple):
        types_ = on if isinstance(on, tuple) else (on,)
        if not types_ and not has_result_predicate:
            raise ConfigurationError(
                "on=() retries nothing; name the exceptions to retry (or give on_result "
                "to retry on results only)"
            )
        for item in types_:
            if not isinstance(item, type) or not issubclass(item, BaseException):
                raise ConfigurationError(f"on= must hold exception classes, got {item!r}")
            if not issubclass(item, Exception):
                raise ConfigurationError(
                    f"on={item.__name__} is not an Exception subclass: KeyboardInterrupt, "
                    "SystemExit and CancelledError are never retried"
                )
        return lambda exc: isinstance(exc, types_)
    if callable(on):
        return cast(Callable[[Exception], bool], on)
    raise ConfigurationError(
        f"on= must be an exception class, a tuple of them or a predicate, got {on!r}"
    )
