"""Typed events and the listeners that receive them.

Components never import Prometheus or OpenTelemetry: they publish frozen, slotted event
dataclasses to listeners (plain callables). ``observability/`` provides listeners that turn
events into metrics, spans and logs. Publishing with no listener attached is one truth test.

Listeners are attached per component (``listeners=`` on its constructor) or process-wide
with `subscribe`, which reaches every component, existing and future. Either way a
component's ``Publisher.listeners`` is a plain tuple, refreshed when the set changes, so the
hot path never looks anything up.

A listener that raises is logged and otherwise ignored: a broken sink must not break the
request that produced the event.

The vocabulary, shared by every component::

    RateLimitDecided   BackendFailure
    BreakerTransitioned   BreakerRejected   BreakerCallFinished
    RetryAttempted   RetryGaveUp
    CacheAccessed   CacheLoaded
    AuthSucceeded   AuthFailed   AccessDenied
    RequestStarted   RequestFinished
    HealthChecked
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal, TypeVar

__all__ = [
    "AccessDenied",
    "AuthFailed",
    "AuthSucceeded",
    "BackendFailure",
    "BreakerCallFinished",
    "BreakerRejected",
    "BreakerTransitioned",
    "CacheAccessed",
    "CacheLoaded",
    "Event",
    "HealthChecked",
    "Listener",
    "Publisher",
    "RateLimitDecided",
    "RequestFinished",
    "RequestStarted",
    "RetryAttempted",
    "RetryGaveUp",
    "deliver",
    "subscribe",
]

_log = logging.getLogger("sysdesign_kit.events")
_E = TypeVar("_E")


def _quick_init(cls: type[_E]) -> type[_E]:
    """Give a frozen, slotted dataclass an ``__init__`` that writes its slots directly.

    A frozen dataclass's generated ``__init__`` goes through ``object.__setattr__`` once per
    field; calling each slot's own descriptor instead makes an event about 40% cheaper to
    build, which every request pays twice. Same parameters, defaults and result.
    """
    params: list[str] = []
    namespace: dict[str, Any] = {}
    body: list[str] = []
    for field in fields(cls):  # type: ignore[arg-type]
        name = field.name
        if field.default is not MISSING:
            namespace[f"_default_{name}"] = field.default
            params.append(f"{name}=_default_{name}")
        elif field.default_factory is not MISSING:  # pragma: no cover - no event has one
            raise TypeError(f"{cls.__name__}.{name}: default factories are not supported")
        else:
            params.append(name)
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    # Field names are identifiers from the class body, never outside input; dataclasses
    # builds its own __init__ the same way.
    exec(source, namespace)  # noqa: S102
    init = namespace["__init__"]
    generated = cls.__init__
    init.__qualname__ = generated.__qualname__
    init.__annotations__ = generated.__annotations__
    init.__doc__ = generated.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


@_quick_init
@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; ``component`` names the object that published it."""

    component: str


@_quick_init
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


@_quick_init
@dataclass(frozen=True, slots=True)
class BackendFailure(Event):
    """A shared backend failed; ``outcome`` says what the component did instead."""

    backend: str
    operation: str
    error: str
    # "fail_open" | "fail_closed" | "raised" | "serve_stale" | "local" (a breaker goes on
    # with its own state while its shared state is unreachable)
    outcome: str


@_quick_init
@dataclass(frozen=True, slots=True)
class BreakerTransitioned(Event):
    """A circuit breaker changed state (``"closed"``, ``"open"``, ``"half_open"``)."""

    name: str
    previous: str
    state: str


@_quick_init
@dataclass(frozen=True, slots=True)
class BreakerRejected(Event):
    """An open (or saturated half-open) breaker refused a call."""

    name: str
    retry_after: float


@_quick_init
@dataclass(frozen=True, slots=True)
class BreakerCallFinished(Event):
    """A call the breaker let through has finished.

    ``outcome`` is ``"success"``, ``"failure"`` or ``"ignored"`` (an exception the breaker
    was told to ignore: counted as neither); ``slow`` marks a call over the slow-call
    threshold (counted as a failure when the breaker is asked to).
    """

    name: str
    outcome: str
    duration: float  # seconds
    slow: bool = False


@_quick_init
@dataclass(frozen=True, slots=True)
class RetryAttempted(Event):
    """A call failed and will be tried again after ``delay`` seconds."""

    name: str
    attempt: int  # the attempt that failed, from 1
    delay: float
    error: str


@_quick_init
@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """Retrying stopped (attempts, budget or deadline exhausted); the last error is raised."""

    name: str
    attempts: int
    error: str
    # "attempts" | "budget" (the retry budget is exhausted) | "deadline" | "not_retryable"
    # | "breaker_open" (never retried)
    reason: str


@_quick_init
@dataclass(frozen=True, slots=True)
class CacheAccessed(Event):
    """A cache lookup and how it was answered."""

    name: str
    outcome: Literal["hit", "miss", "stale", "coalesced"]


@_quick_init
@dataclass(frozen=True, slots=True)
class CacheLoaded(Event):
    """A cache called its loader for a missing, expiring or stale key.

    ``outcome`` is ``"loaded"`` (a value to store), ``"missing"`` (the loader found
    nothing), ``"failed"`` (it raised) or ``"refreshed"`` (an early or stale-while-
    revalidate refresh in the background succeeded).
    """

    name: str
    outcome: str
    duration: float  # seconds the loader took


@_quick_init
@dataclass(frozen=True, slots=True)
class AuthSucceeded(Event):
    """A request was authenticated; ``subject`` is an identifier, never a credential."""

    scheme: str  # "jwt" | "api_key" | "introspection" ...
    subject: str


@_quick_init
@dataclass(frozen=True, slots=True)
class AuthFailed(Event):
    """Authentication failed; ``reason`` is a short code, never the credential."""

    scheme: str
    reason: str


@_quick_init
@dataclass(frozen=True, slots=True)
class AccessDenied(Event):
    """A request was refused by authorization (or would have been, in a dry run).

    ``route`` is the matched rule's route (``""`` when none matched); ``subject`` is the
    principal's (``""`` when anonymous); ``reason`` a short code (``missing_role``,
    ``insufficient_scope``, ``unauthenticated``, ``unmatched``...).
    """

    method: str
    route: str
    subject: str
    reason: str
    dry_run: bool = False


@_quick_init
@dataclass(frozen=True, slots=True)
class RequestStarted(Event):
    """An HTTP request entered the observed stack."""

    method: str
    # The route template, never the raw path; "" from ObservabilityMiddleware, which
    # publishes this before routing has happened.
    route: str
    request_id: str


@_quick_init
@dataclass(frozen=True, slots=True)
class RequestFinished(Event):
    """An HTTP request left the observed stack.

    ``stages`` is the request's timeline: ``(stage, seconds)`` in the order the stages ran
    (``waf``, ``ratelimit``, ``auth``, ``app``...).
    """

    method: str
    route: str
    request_id: str
    status: int
    duration: float  # seconds
    stages: tuple[tuple[str, float], ...] = ()
    # What failed: the exception's class name, or the status code of a 5xx ("503");
    # "CancelledError" (status 499) when the client left before the answer.
    error_type: str | None = None


@_quick_init
@dataclass(frozen=True, slots=True)
class HealthChecked(Event):
    """A health check produced a reading."""

    check: str  # "component:measurement"
    status: Literal["pass", "warn", "fail"]
    duration: float  # seconds the check took
    observed_value: float | None = None


Listener = Callable[[Event], None]

_global: tuple[Listener, ...] = ()
_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()


class Publisher:
    """Fans events out to listeners; one truth test when there are none.

    Args:
        listeners: this component's own listeners; process-wide ones (see `subscribe`) are
            added to them.
    """

    __slots__ = ("__weakref__", "_own", "listeners")

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self._own: tuple[Listener, ...] = tuple(listeners)
        self.listeners: tuple[Listener, ...] = self._own + _global
        _publishers.add(self)

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def add(self, listener: Listener) -> None:
        """Attach one more listener to this component."""
        self._own = (*self._own, listener)
        self.listeners = self._own + _global

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every listener; a failing listener is logged and skipped."""
        deliver(self.listeners, event)


def deliver(listeners: Iterable[Listener], event: Event) -> None:
    """`Publisher.publish` to ``listeners`` (some of a publisher's, say): each failing one
    is logged on the ``sysdesign_kit.events`` logger and skipped."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            _log.exception("event listener %r failed on %s", listener, type(event).__name__)


def subscribe(listener: Listener) -> Callable[[], None]:
    """Attach ``listener`` to every component of the process, now and later.

    Returns:
        A function that detaches it again.
    """
    global _global
    _global = (*_global, listener)
    _refresh()

    def unsubscribe() -> None:
        global _global
        _global = tuple(item for item in _global if item is not listener)
        _refresh()

    return unsubscribe


def _refresh() -> None:
    for publisher in list(_publishers):
        publisher.listeners = publisher._own + _global
