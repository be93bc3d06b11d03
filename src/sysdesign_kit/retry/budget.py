"""`RetryBudget`: a token bucket that caps how much load retries may add to a dependency.

The scheme is Finagle's retry budget. Every first try deposits ``ratio`` tokens (0.2 by
default); every retry withdraws one and is refused when less than one is left. So retries
add at most ``ratio`` extra load over first tries, however many callers fail at once: an
outage cannot turn into a retry storm. A reserve of ``min_retries_per_second * ttl`` tokens
lets a quiet client (too few first tries to fund anything) still retry about
``min_retries_per_second`` times a second.

Deposits and withdrawals expire after ``ttl`` seconds, so a surplus saved during an hour of
health cannot pay for a storm later. They are counted in ten time slices of ``ttl / 10``,
so an entry leaves the window between ``0.9 * ttl`` and ``ttl`` after it was made.

Share one budget per dependency (per host), across every policy and call that reaches it.
Thread-safe: withdrawals and slice changes hold a lock; a deposit is one list-item
increment without it, which the GIL does not interrupt in practice and which, if it ever
were lost, would only make the budget stricter.
"""

from __future__ import annotations

import threading

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.retry._config import check_seconds

__all__ = ["RetryBudget"]

_SLICES = 10


class RetryBudget:
    """How many retries a dependency may receive, relative to its first tries.

    Args:
        ratio: tokens each first try deposits (0.0 to 1.0): the extra load retries may add.
        min_retries_per_second: retries allowed regardless of traffic (the reserve).
        ttl: seconds a deposit or withdrawal counts for.
        clock: monotonic time source (a `ManualClock` in tests).

    Raises:
        ConfigurationError: ratio outside [0, 1], a negative floor, or a ttl that is not
            a positive number of seconds.
    """

    __slots__ = (
        "_deposits",
        "_index",
        "_lock",
        "_monotonic",
        "_per_slice",
        "_pos",
        "_slice_end",
        "_withdrawals",
        "clock",
        "min_retries_per_second",
        "ratio",
        "reserve",
        "ttl",
    )

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_retries_per_second: float = 10.0,
        ttl: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise ConfigurationError(
                f"ratio must be between 0.0 and 1.0 (the share of extra load retries may "
                f"add; 0.2 = 20%), got {ratio!r}"
            )
        self.ratio = float(ratio)
        self.min_retries_per_second = check_seconds(
            "min_retries_per_second", min_retries_per_second
        )
        self.ttl = check_seconds("ttl", ttl, positive=True)
        self.clock = clock
        self.reserve = self.min_retries_per_second * self.ttl
        self._monotonic = clock.monotonic
        self._per_slice = _SLICES / self.ttl
        self._lock = threading.Lock()
        self._deposits = [0] * _SLICES
        self._withdrawals = [0] * _SLICES
        self._set_slice(int(self._monotonic() * self._per_slice))

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, min_retries_per_second="
            f"{self.min_retries_per_second}, ttl={self.ttl}, balance={self.balance:.2f})"
        )

    def deposit(self, now: float | None = None) -> None:
        """Record a first try.

        Args:
            now: this budget's ``clock.monotonic()`` if the caller has just read it.
        """
        if now is None:
            now = self._monotonic()
        if now >= self._slice_end:  # one float comparison while the slice lasts
            with self._lock:
                self._advance(int(now * self._per_slice))
        self._deposits[self._pos] += 1

    def try_withdraw(self) -> bool:
        """Take the token one retry costs; False (nothing taken) when the budget is spent."""
        index = int(self._monotonic() * self._per_slice)
        with self._lock:
            self._advance(index)
            if self._balance() < 1.0:
                return False
            self._withdrawals[self._pos] += 1
            return True

    @property
    def balance(self) -> float:
        """Retries the budget would allow now (fractional tokens included)."""
        with self._lock:
            self._advance(int(self._monotonic() * self._per_slice))
            return self._balance()

    def _balance(self) -> float:
        return self.ratio * sum(self._deposits) - sum(self._withdrawals) + self.reserve

    def _advance(self, index: int) -> None:
        """Empty the slices that have left the window on the way to slice ``index``."""
        current = self._index
        if index <= current:  # another thread got here first, or a clock read raced it
            return
        for stale in range(current + 1, min(index, current + _SLICES) + 1):
            self._deposits[stale % _SLICES] = 0
            self._withdrawals[stale % _SLICES] = 0
        self._set_slice(index)

    def _set_slice(self, index: int) -> None:
        self._index = index
        self._pos = index % _SLICES
        self._slice_end = (index + 1) / self._per_slice
