"""Typed events and the listeners that receive them.

Components never import Prometheus or OpenTelemetry: they publish frozen, slotted event
dataclasses to listeners (plain callables). ``observability/`` provides listeners that turn
events into metrics, spans and logs. Publishing with no listener attached is one truth test.

A listener that raises is logged and otherwise ignored: a broken sink must not break the
request that produced the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "BackendFailure",
    "Event",
    "Listener",
    "Publisher",
    "RateLimitDecided",
]

_log = logging.getLogger("sysdesign_kit.events")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; ``component`` names the object that published it."""

    component: str


@dataclass(frozen=True, slots=True)
class RateLimitDecided(Event):
    """A rate limiter decided on one key for one policy."""

    policy: str
    key: str
    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    cost: int
    shadow: bool = False
    degraded: bool = False  # decided by the failure policy, not by the backend


@dataclass(frozen=True, slots=True)
class BackendFailure(Event):
    """A shared backend failed; ``outcome`` says what the component did instead."""

    backend: str
    operation: str
    error: str
    outcome: str  # "fail_open" | "fail_closed" | "raised"


Listener = Callable[[Event], None]


class Publisher:
    """Fans events out to listeners; cheap when there are none."""

    __slots__ = ("listeners",)

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self.listeners: tuple[Listener, ...] = tuple(listeners)

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def add(self, listener: Listener) -> None:
        """Attach one more listener."""
        self.listeners = (*self.listeners, listener)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every listener; a failing listener is logged and skipped."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                _log.exception("event listener %r failed on %s", listener, type(event).__name__)
