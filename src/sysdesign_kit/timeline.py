"""The per-request timeline: how long each edge stage took, measured where it runs.

The observability layer puts a `Timeline` in the ASGI scope; every other layer (WAF, rate
limiter, auth, cache...) that finds one records its own stage. Without an observability
layer the cost to a stage is one dict lookup. The finished timeline becomes the
``RequestFinished`` event's ``stages`` and the ``Server-Timing`` header.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

__all__ = ["TIMELINE_SCOPE_KEY", "Timeline", "get_timeline"]

#: The ASGI scope key under which the request's `Timeline` is kept.
TIMELINE_SCOPE_KEY = "sysdesign_kit.timeline"

_clock = time.perf_counter


class Timeline:
    """Stages of one request, in the order they finished: ``(name, seconds)``."""

    __slots__ = ("spent", "stages", "started")

    def __init__(self) -> None:
        self.started = _clock()
        self.stages: list[tuple[str, float]] = []
        #: Seconds in all recorded stages: kept as they are added, so the time outside
        #: them costs a subtraction at the end of every request instead of a sum.
        self.spent = 0.0

    def add(self, name: str, seconds: float) -> None:
        """Record that stage ``name`` took ``seconds``."""
        self.stages.append((name, seconds))
        self.spent += seconds

    def since(self, name: str, start: float) -> None:
        """Record stage ``name`` as running from ``start`` (a `now()` reading) until now."""
        seconds = _clock() - start
        self.stages.append((name, seconds))
        self.spent += seconds

    @staticmethod
    def now() -> float:
        """A reading of the high-resolution clock the timeline measures with."""
        return _clock()

    def total(self, name: str) -> float:
        """Seconds spent in every stage called ``name``."""
        return sum(seconds for stage, seconds in self.stages if stage == name)


def get_timeline(scope: MutableMapping[str, Any]) -> Timeline | None:
    """The request's timeline, if an observability layer started one."""
    return scope.get(TIMELINE_SCOPE_KEY)
