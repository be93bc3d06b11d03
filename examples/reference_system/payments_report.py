"""What the payment scenario saw: breaker transitions, retries and answers, on one timeline.

`PaymentLog` is an event listener: it keeps the breaker's transitions and rejections and the
retry policy's attempts and give-ups, stamped with the demo's clock. `format_payments`
prints them with the answers the callers got, so the report shows what happened, not what
the configuration says should happen.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from sysdesign_kit.clock import Clock
from sysdesign_kit.events import (
    BreakerRejected,
    BreakerTransitioned,
    Event,
    RetryAttempted,
    RetryGaveUp,
)
from sysdesign_kit.retry import Backoff

__all__ = ["PaymentLog", "PaymentStep", "format_payments"]


@dataclass(slots=True)
class PaymentStep:
    """One step of the scenario: what was done, and the answers it got."""

    title: str
    statuses: Counter[int] = field(default_factory=Counter)
    reached_service: int = 0  # charges that arrived at the payment service


class PaymentLog:
    """Listener: the resilience events of the payment client, with the time they happened.

    Args:
        clock: the payment client's clock.
        backoff: the retry policy's schedule, to show each wait beside its ceiling.
        prefix: names of the breakers and retry policies to keep (the transport names
            both after the origin, ``http:{scheme}://{host}:{port}``).
    """

    def __init__(
        self, clock: Clock, backoff: Backoff, prefix: str = "http:http://payments.internal"
    ) -> None:
        self._clock = clock
        self._backoff = backoff
        self._prefix = prefix
        self._start = clock.monotonic()
        self.lines: list[tuple[float, str, int]] = []  # (at, what, how many times in a row)

    def mark(self) -> None:
        """Count time from now (the scenario's start)."""
        self._start = self._clock.monotonic()

    def __call__(self, event: Event) -> None:
        name = getattr(event, "name", "")
        if not isinstance(name, str) or not name.startswith(self._prefix):
            return
        text: str | None = None
        if isinstance(event, BreakerTransitioned):
            text = f"breaker {event.previous} -> {event.state}"
        elif isinstance(event, BreakerRejected):
            text = f"breaker rejects a call: fails fast, {event.retry_after:.1f} s left open"
        elif isinstance(event, RetryAttempted):
            ceiling = self._backoff.ceiling(event.attempt)
            text = (
                f"attempt {event.attempt} failed ({_short(event.error)}); retry in "
                f"{event.delay:.2f} s (full jitter under {ceiling:g} s)"
            )
        elif isinstance(event, RetryGaveUp) and not (
            event.reason == "breaker_open" and event.attempts == 1
        ):  # a first try the breaker refused: the rejection says it all
            text = f"retrying stops after {event.attempts} attempts: {event.reason}"
        if text is None:
            return
        at = self._clock.monotonic() - self._start
        if self.lines and self.lines[-1][:2] == (at, text):
            self.lines[-1] = (at, text, self.lines[-1][2] + 1)
        else:
            self.lines.append((at, text, 1))


def _short(error: str) -> str:
    status = re.search(r"<Response \[(\d{3})", error)
    return f"HTTP {status.group(1)}" if status else error


def format_payments(steps: list[PaymentStep], log: PaymentLog, breaker: str) -> list[str]:
    """The payment section of the demo's report."""
    width = max((len(step.title) for step in steps), default=4)
    lines = [
        "",
        "payments through AsyncResilientTransport (breaker + retries with full jitter, "
        "simulated clock):",
        f"  breaker {breaker}",
        f"  {'step':<{width}}  {'answers':<16} {'reached the service':>19}",
    ]
    for step in steps:
        answers = ", ".join(f"{status} x{count}" for status, count in sorted(step.statuses.items()))
        lines.append(f"  {step.title:<{width}}  {answers:<16} {step.reached_service:>19}")
    lines += ["", "what the breaker and the retries did (t = seconds since the first payment):"]
    lines += [
        f"  t={at:6.2f}  {text}" + (f" (x{times})" if times > 1 else "")
        for at, text, times in log.lines
    ]
    lines.append(
        "  201 = charged; 202 = queued by the fallback while the breaker is open (no call made)"
    )
    return lines
