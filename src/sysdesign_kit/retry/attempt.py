"""What one call knows about its own retrying: `Attempt`, `Outcome` and `current_attempt`.

Every retried call has its own attempts; nothing about a call is stored on the shared
`Retry` policy. Iterating a policy yields `Attempt` objects; inside a decorated function
(or one run by ``Retry.call``) `current_attempt` returns the attempt being retried, read
from a context variable, so concurrent calls and tasks never see each other's.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sysdesign_kit.clock import Clock

if TYPE_CHECKING:
    from sysdesign_kit.retry._core import Run

__all__ = ["Attempt", "Outcome", "current_attempt"]

_CURRENT: ContextVar[Attempt | None] = ContextVar("sysdesign_kit.retry.attempt", default=None)


def current_attempt() -> Attempt | None:
    """The retry attempt the calling code runs in, or None.

    None during a first try (attempt 1 of a decorated function, or of ``Retry.call``) and
    outside any retried call: the first try is kept free of bookkeeping, so only retries
    publish themselves here. In the iterator form use the yielded `Attempt` instead.
    """
    return _CURRENT.get()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as given to a ``retry_after`` hook.

    Attributes:
        attempt: the number of the attempt that ended (from 1).
        exception: the exception it raised, or None when it returned.
        result: what it returned (None when it raised).
        wall_time: the policy clock's wall time (``clock.time()``) when it ended: what an
            HTTP-date ``Retry-After`` is measured against.
    """

    attempt: int
    exception: BaseException | None
    result: Any
    wall_time: float


class Attempt:
    """One try of a retried call.

    Attributes:
        number: 1 for the first call, 2 for the first retry...
        delay: the seconds waited before this attempt (0.0 for the first).

    In the iterator form an attempt is also the context manager around the try::

        for attempt in policy:
            with attempt:
                response = send(timeout=attempt.remaining)
                attempt.result = response  # only needed with ``on_result``
    """

    __slots__ = ("_clock", "_deadline_at", "_guard", "_result", "_run", "_start", "delay", "number")

    def __init__(
        self,
        number: int,
        delay: float,
        *,
        clock: Clock,
        start: float,
        deadline_at: float | None,
        run: Run | None = None,
    ) -> None:
        self.number = number
        self.delay = delay
        self._clock = clock
        self._start = start
        self._deadline_at = deadline_at
        self._run = run
        self._guard: Any = None
        self._result: Any = _UNSET

    def __repr__(self) -> str:
        return f"Attempt(number={self.number}, delay={self.delay:.3f})"

    @property
    def elapsed(self) -> float:
        """Seconds since the call started, now.

        Without a deadline the decorator does not read the clock before the first try
        fails, so this counts from that failure.
        """
        return self._clock.monotonic() - self._start

    @property
    def remaining(self) -> float | None:
        """Seconds left until the policy's deadline, now (never negative); None if no
        deadline is set. Pass it on as the attempt's own timeout."""
        if self._deadline_at is None:
            return None
        left = self._deadline_at - self._clock.monotonic()
        return left if left > 0.0 else 0.0

    @property
    def result(self) -> Any:
        """What this attempt produced (iterator form: set it for ``on_result`` to see).

        Raises:
            AttributeError: nothing was recorded.
        """
        if self._result is _UNSET:
            raise AttributeError("no result was recorded for this attempt")
        return self._result

    @result.setter
    def result(self, value: Any) -> None:
        self._result = value

    def __enter__(self) -> Attempt:
        if self._run is None:
            raise RuntimeError("only attempts yielded by iterating a Retry are context managers")
        self._run.enter(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._run is None:  # pragma: no cover - __enter__ refused already
            return False
        return self._run.exit(self, exc)


_UNSET: Any = object()
