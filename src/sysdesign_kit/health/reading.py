"""What a check saw, and how old news is judged: pure values, no I/O.

A check's ``probe`` returns an `Observation`; the runner stamps it into a `Reading` (when it
was taken, how long it took). Endpoints never run checks: they `judge` the cached reading
against the time now, so a reading that has not been renewed for too long degrades to
``warn`` and then to ``fail`` on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeAlias

__all__ = [
    "MAX_OUTPUT",
    "JSONValue",
    "Observation",
    "Reading",
    "Status",
    "clip",
    "judge",
    "rfc3339",
    "worst",
]

Status: TypeAlias = Literal["pass", "warn", "fail"]
JSONValue: TypeAlias = (
    str | int | float | bool | Sequence["JSONValue"] | Mapping[str, "JSONValue"] | None
)

_RANK: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}
_STATUSES = tuple(_RANK)
#: Outputs are meant for people reading a probe response, not for stack traces.
MAX_OUTPUT = 500


@dataclass(frozen=True, slots=True)
class Observation:
    """What one run of a check saw.

    Attributes:
        status: ``"pass"``, ``"warn"`` or ``"fail"``.
        observed_value: any JSON value (a number for a measurement); ``None`` for none.
        observed_unit: the unit of ``observed_value`` (``"ms"``, ``"bytes"``, ``"percent"``).
        output: why the status is not ``pass``; ignored (never shown) on ``pass``.
    """

    status: Status = "pass"
    observed_value: JSONValue = None
    observed_unit: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        if self.status not in _RANK:
            raise ValueError(f"status must be one of {list(_STATUSES)}, got {self.status!r}")


@dataclass(frozen=True, slots=True)
class Reading:
    """An `Observation` as recorded by the runner.

    Attributes:
        status: the status after criticality was applied (a non-critical failure is ``warn``).
        time: wall-clock seconds (epoch) when the reading was taken, for the ``time`` field.
        taken: monotonic seconds when it was taken, to judge its age.
        duration: seconds the probe took (up to its timeout).
        observed_value, observed_unit, output: as in `Observation`; output is ``None``
            on ``pass``.
    """

    status: Status
    time: float
    taken: float
    duration: float
    observed_value: JSONValue = None
    observed_unit: str | None = None
    output: str | None = None


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of ``statuses`` (``pass`` when there are none)."""
    result: Status = "pass"
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = status
    return result


def judge(
    reading: Reading | None, now: float, *, stale_after: float, expire_after: float
) -> tuple[Status, str | None]:
    """The status and output a reading stands for at monotonic time ``now``.

    A reading older than ``stale_after`` seconds is at best ``warn``; older than
    ``expire_after`` it is ``fail``: the runner has stopped renewing it, so it says nothing
    about the present. No reading at all is a ``fail``.
    """
    if reading is None:
        return "fail", "no reading yet (is the health runner started?)"
    age = now - reading.taken
    if age > expire_after:
        return "fail", f"stale reading: taken {age:.0f} s ago (limit {expire_after:g} s)"
    if age > stale_after and reading.status != "fail":
        stale = f"stale reading: taken {age:.0f} s ago (limit {stale_after:g} s)"
        return "warn", f"{stale}; {reading.output}" if reading.output else stale
    return reading.status, reading.output


def rfc3339(epoch_seconds: float) -> str:
    """``epoch_seconds`` as an RFC 3339 UTC timestamp with milliseconds."""
    if not math.isfinite(epoch_seconds):
        raise ValueError(f"not a time: {epoch_seconds!r}")
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clip(text: str) -> str:
    """``text`` cut to `MAX_OUTPUT` characters."""
    return text if len(text) <= MAX_OUTPUT else text[: MAX_OUTPUT - 1] + "…"
