"""`TracingSink`: component events as span events on the request's span.

A rate-limit decision, breaker transition, retry, cache access or authentication shows on
the span of the request it happened in, at the moment it happened. Names and attributes
live under ``sysdesign_kit.``; rate-limit keys and credentials are never recorded (the
authenticated ``subject`` is). Request events are the span itself (`RequestTracer`) and
health checks run outside requests, so neither becomes a span event.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from sysdesign_kit.events import (
    AuthFailed,
    AuthSucceeded,
    BackendFailure,
    BreakerRejected,
    BreakerTransitioned,
    CacheAccessed,
    Event,
    RateLimitDecided,
    RetryAttempted,
    RetryGaveUp,
)

__all__ = ["TracingSink"]


def _text(value: str, limit: int = 256) -> str:
    # Error strings come from drivers and may be long; a span event is not a log file.
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _attributes(event: Event) -> tuple[str, dict[str, AttributeValue]] | None:
    """The span event's name and attributes for a component event, or None to skip it."""
    prefix = "sysdesign_kit."
    common: dict[str, AttributeValue] = {"sysdesign_kit.component": event.component}
    match event:
        case RateLimitDecided():
            # The key is left out: it is a client's address or identity, and spans travel.
            return prefix + "rate_limit.decided", common | {
                "sysdesign_kit.rate_limit.policy": event.policy,
                "sysdesign_kit.rate_limit.allowed": event.allowed,
                "sysdesign_kit.rate_limit.limit": event.limit,
                "sysdesign_kit.rate_limit.remaining": event.remaining,
                "sysdesign_kit.rate_limit.retry_after": event.retry_after,
                "sysdesign_kit.rate_limit.cost": event.cost,
                "sysdesign_kit.rate_limit.shadow": event.shadow,
                "sysdesign_kit.rate_limit.degraded": event.degraded,
            }
        case BackendFailure():
            return prefix + "backend.failure", common | {
                "sysdesign_kit.backend.name": event.backend,
                "sysdesign_kit.backend.operation": event.operation,
                "sysdesign_kit.backend.error": _text(event.error),
                "sysdesign_kit.backend.outcome": event.outcome,
            }
        case BreakerTransitioned():
            return prefix + "breaker.transitioned", common | {
                "sysdesign_kit.breaker.name": event.name,
                "sysdesign_kit.breaker.previous": event.previous,
                "sysdesign_kit.breaker.state": event.state,
            }
        case BreakerRejected():
            return prefix + "breaker.rejected", common | {
                "sysdesign_kit.breaker.name": event.name,
                "sysdesign_kit.breaker.retry_after": event.retry_after,
            }
        case RetryAttempted():
            return prefix + "retry.attempted", common | {
                "sysdesign_kit.retry.name": event.name,
                "sysdesign_kit.retry.attempt": event.attempt,
                "sysdesign_kit.retry.delay": event.delay,
                "sysdesign_kit.retry.error": _text(event.error),
            }
        case RetryGaveUp():
            return prefix + "retry.gave_up", common | {
                "sysdesign_kit.retry.name": event.name,
                "sysdesign_kit.retry.attempts": event.attempts,
                "sysdesign_kit.retry.error": _text(event.error),
                "sysdesign_kit.retry.reason": event.reason,
            }
        case CacheAccessed():
            return prefix + "cache.accessed", common | {
                "sysdesign_kit.cache.name": event.name,
                "sysdesign_kit.cache.outcome": event.outcome,
            }
        case AuthSucceeded():
            return prefix + "auth.succeeded", common | {
                "sysdesign_kit.auth.scheme": event.scheme,
                "sysdesign_kit.auth.subject": event.subject,
            }
        case AuthFailed():
            return prefix + "auth.failed", common | {
                "sysdesign_kit.auth.scheme": event.scheme,
                "sysdesign_kit.auth.reason": event.reason,
            }
    return None  # request events are the span itself; health checks run outside requests


class TracingSink:
    """A listener that adds component events to the current span as span events.

    Attach it with `sysdesign_kit.events.subscribe` (every component) or a component's
    ``listeners=``. With no recording span current it returns after one context lookup.
    """

    __slots__ = ()

    def __call__(self, event: Event) -> None:
        """Record ``event`` on the current span, if one is recording."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        found = _attributes(event)
        if found is not None:
            span.add_event(found[0], found[1])
