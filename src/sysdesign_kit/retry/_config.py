"""Checks shared by the retry package's constructors: each names the argument and says why."""

from __future__ import annotations

import math

from sysdesign_kit.errors import ConfigurationError

__all__ = ["check_int", "check_seconds"]


def check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite number of seconds, >= 0 (> 0 when ``positive``).

    Raises:
        ConfigurationError: not a number (bools are refused), not finite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    if positive and number <= 0:
        raise ConfigurationError(f"{name} must be > 0 seconds, got {value!r}")
    if number < 0:
        raise ConfigurationError(f"{name} must be >= 0 seconds (a negative wait), got {value!r}")
    return number


def check_int(name: str, value: object, *, minimum: int, why: str = "") -> int:
    """``value`` as an int >= ``minimum``; ``why`` is added to the message when it is not.

    Raises:
        ConfigurationError: not an int (bools are refused) or below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        reason = f": {why}" if why else ""
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}{reason}")
    return value
