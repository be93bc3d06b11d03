"""Rates: how many requests per period, with an optional burst.

``parse_rate`` accepts the forms people write::

    "100/minute"   "20/1m"   "5/second"   "1000/hour"   "10/5s"   "100 per minute"
    "100/minute burst 150"   "100/minute; burst=150"

Everything is validated here, once, so the hot path never re-checks a rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sysdesign_kit.errors import InvalidRate

__all__ = ["MAX_COUNT", "Rate", "parse_rate"]

# Counts and costs stay far below 2**53 so the Lua twins (IEEE doubles) compute exactly.
MAX_COUNT = 1_000_000_000
_MAX_PERIOD_US = 366 * 86_400 * 1_000_000

_UNITS: dict[str, int] = {}
for _names, _us in (
    (("ms", "msec", "millisecond", "milliseconds"), 1_000),
    (("s", "sec", "secs", "second", "seconds"), 1_000_000),
    (("m", "min", "mins", "minute", "minutes"), 60_000_000),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000_000),
    (("d", "day", "days"), 86_400_000_000),
):
    for _name in _names:
        _UNITS[_name] = _us

_RATE = re.compile(
    r"""^\s*(?P<count>[^/\s]+)\s*(?:/|\s+per\s+)\s*(?P<period>[^;,\s]+(?:\s+[a-z]+)?)
        \s*(?:[;,]?\s*burst\s*[=:\s]\s*(?P<burst>\S+))?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_PERIOD = re.compile(r"^(?P<n>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period_us`` microseconds; ``burst`` caps a token bucket.

    Attributes:
        limit: requests allowed per period (the quota).
        period_us: the period in whole microseconds.
        burst: how many may arrive at once in a token bucket (defaults to ``limit``).
    """

    limit: int
    period_us: int
    burst: int = 0
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        text = self.text or f"{self.limit}/{self.period_us}us"
        for name, value, top in (
            ("count", self.limit, MAX_COUNT),
            ("period", self.period_us, _MAX_PERIOD_US),
            ("burst", self.burst or self.limit, MAX_COUNT),
        ):
            if type(value) is not int or value < 1 or value > top:
                raise InvalidRate(text, value, f"{name} must be an integer in 1..{top}")
        if not self.burst:
            object.__setattr__(self, "burst", self.limit)
        if not self.text:
            object.__setattr__(self, "text", text)

    @property
    def period(self) -> float:
        """The period in seconds."""
        return self.period_us / 1_000_000

    @property
    def interval_us(self) -> int:
        """Microseconds between two tokens (GCRA emission interval), at least 1."""
        # Rounded to a whole microsecond so Python and Lua agree exactly; the drift is below
        # one microsecond per token.
        return max(1, round(self.period_us / self.limit))

    def __str__(self) -> str:
        return self.text


def parse_rate(text: str | Rate) -> Rate:
    """Parse ``"100/minute"``-style text into a `Rate`.

    Raises:
        InvalidRate: naming the part that is wrong (count, period, unit or burst).
    """
    if isinstance(text, Rate):
        return text
    if not isinstance(text, str):
        raise InvalidRate(text, text, "is not a string")
    match = _RATE.match(text)
    if match is None:
        raise InvalidRate(text, text, "is not of the form '<count>/<period>', e.g. '100/minute'")
    count = _positive_int(text, match["count"], "count")
    period_text = match["period"].strip()
    period = _PERIOD.match(period_text.replace(" ", ""))
    if period is None:
        raise InvalidRate(text, period_text, "is not a period such as 'minute', '1m' or '10s'")
    unit = period["unit"].lower()
    if unit not in _UNITS:
        raise InvalidRate(text, period["unit"], f"is not a time unit (one of {sorted(_UNITS)})")
    multiplier = float(period["n"]) if period["n"] else 1.0
    period_us = round(multiplier * _UNITS[unit])
    if period_us < 1 or period_us > _MAX_PERIOD_US:
        raise InvalidRate(text, period_text, "must be between 1 microsecond and 366 days")
    burst = _positive_int(text, match["burst"], "burst") if match["burst"] else 0
    return Rate(count, period_us, burst, text=text.strip())


def _positive_int(text: str, part: str, name: str) -> int:
    if not part.isdigit() or not part.isascii():
        raise InvalidRate(text, part, f"is not a whole positive {name}")
    value = int(part)
    if value < 1 or value > MAX_COUNT:
        raise InvalidRate(text, part, f"{name} must be in 1..{MAX_COUNT}")
    return value
