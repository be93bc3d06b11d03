"""The backoff schedule: how long to wait before each retry. Pure: no clock, no I/O, and the
random numbers come from the caller.

Before retry ``n`` (``n = 1`` is the first retry, after the first call failed) the ceiling is
``wait_initial * wait_multiplier ** (n - 1)``, capped at ``wait_max``; with the defaults
that is 1 s, 2 s, 4 s, 8 s... A jitter strategy then spreads clients that failed together
over time, so they do not all come back at the same instant (the strategies and their names
follow Marc Brooker's "Exponential Backoff And Jitter", AWS Architecture Blog, 2015)::

    none          ceiling
    full          uniform(0, ceiling)
    equal         ceiling / 2 + uniform(0, ceiling / 2)
    decorrelated  min(wait_max, uniform(wait_initial, 3 * previous wait)), starting from
                  previous = wait_initial (the growth factor 3 is the article's; the
                  multiplier does not apply)

``full`` is the default: in the article's contention simulation it needs the fewest calls
in total (the least extra load on the struggling server) and finishes almost as soon as
``decorrelated``, which makes more calls.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.retry._config import check_seconds

__all__ = ["JITTERS", "Backoff", "JitterName"]

JitterName = Literal["none", "full", "equal", "decorrelated"]
#: The jitter strategies by name.
JITTERS: tuple[str, ...] = get_args(JitterName)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with a cap per wait and a jitter strategy.

    Args:
        wait_initial: the ceiling before the first retry, in seconds.
        wait_multiplier: how much the ceiling grows per retry (>= 1).
        wait_max: the longest single wait, in seconds (>= ``wait_initial``).
        jitter: ``"none"``, ``"full"`` (default), ``"equal"`` or ``"decorrelated"``.

    Raises:
        ConfigurationError: a negative or non-finite wait, ``wait_max < wait_initial``,
            a multiplier below 1, or an unknown jitter name.
    """

    wait_initial: float = 1.0
    wait_multiplier: float = 2.0
    wait_max: float = 30.0
    jitter: JitterName = "full"

    def __post_init__(self) -> None:
        initial = check_seconds("wait_initial", self.wait_initial)
        maximum = check_seconds("wait_max", self.wait_max)
        multiplier = self.wait_multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
            raise ConfigurationError(f"wait_multiplier must be a number, got {multiplier!r}")
        if not 1.0 <= multiplier < float("inf"):
            raise ConfigurationError(
                f"wait_multiplier must be finite and >= 1 (waits must not shrink), "
                f"got {multiplier!r}"
            )
        if maximum < initial:
            raise ConfigurationError(
                f"wait_max ({maximum!r} s) must be >= wait_initial ({initial!r} s)"
            )
        if self.jitter not in JITTERS:
            raise ConfigurationError(f"jitter={self.jitter!r} is not one of {list(JITTERS)}")
        object.__setattr__(self, "wait_initial", initial)
        object.__setattr__(self, "wait_max", maximum)
        object.__setattr__(self, "wait_multiplier", float(multiplier))

    def ceiling(self, retry: int) -> float:
        """The capped exponential wait before retry ``retry`` (from 1), before jitter."""
        try:
            value = self.wait_initial * self.wait_multiplier ** (retry - 1)
        except OverflowError:  # the power outgrew a float long after reaching the cap
            return self.wait_max
        return value if value < self.wait_max else self.wait_max

    def delay(self, retry: int, previous: float, random: Callable[[], float]) -> float:
        """The wait before retry ``retry`` (from 1).

        Args:
            retry: which retry this wait precedes (1 for the first retry).
            previous: the wait before the previous retry (``wait_initial`` before the
                first); only ``decorrelated`` uses it.
            random: returns a float in [0, 1), e.g. ``random.Random(42).random``.
        """
        jitter = self.jitter
        if jitter == "full":
            return self.ceiling(retry) * random()
        if jitter == "equal":
            ceiling = self.ceiling(retry)
            half = ceiling / 2
            value = half + half * random()
            # Halving rounds up for the tiniest (subnormal) ceilings: never exceed it.
            return value if value < ceiling else ceiling
        if jitter == "decorrelated":
            low = self.wait_initial
            value = low + (3 * previous - low) * random()
            return value if value < self.wait_max else self.wait_max
        return self.ceiling(retry)

    def delays(self, rng: _random.Random | None = None) -> Iterator[float]:
        """The endless sequence of waits (before retry 1, 2, 3...), drawn from ``rng``."""
        draw = (rng or _random.Random()).random
        previous = self.wait_initial
        retry = 1
        while True:
            previous = self.delay(retry, previous, draw)
            yield previous
            retry += 1
