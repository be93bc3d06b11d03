"""Server-given delays: parse ``Retry-After`` and find one on an attempt's outcome.

``Retry-After`` (RFC 9110, section 10.2.3) is either delay-seconds (``120``) or an HTTP-date
(``Wed, 21 Oct 2015 07:28:00 GMT``, also the obsolete RFC 850 and asctime forms). A date is
turned into seconds against a wall-clock reading the caller passes in (the policy's
``clock.time()``), so tests fix "now". Values that do not parse are ignored (None): a
broken header must not stop a retry, only its hint is lost.
"""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from sysdesign_kit.retry.attempt import Outcome

__all__ = ["default_retry_after", "parse_retry_after"]

# delay-seconds is 1*DIGIT; a fraction is accepted too (some servers send "1.5").
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | bytes | None, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value.

    Args:
        value: the header value (text or bytes); None for an absent header.
        now: wall-clock seconds since the epoch to measure an HTTP-date against.

    Returns:
        Seconds from ``now`` (0.0 for a date in the past), or None when the value is absent
        or unparseable.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    if not text or len(text) > 64:  # no HTTP-date is longer; spare the parser
        return None
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" dates carry no zone: HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - now
    return seconds if seconds > 0.0 else 0.0


def default_retry_after(outcome: Outcome) -> float | None:
    """The server's delay, if the outcome carries one; the default ``retry_after`` hook.

    Looked for, in order: a ``retry_after`` attribute (seconds, or a header value) on the
    exception or the result (`Rejected` and `RateLimited` carry one); a ``Retry-After``
    header on the result's ``headers`` (an httpx or requests response) or on the
    exception's ``response`` (``httpx.HTTPStatusError``). Negative or NaN values are
    ignored.
    """
    source: Any = outcome.exception if outcome.exception is not None else outcome.result
    seconds = _from_attribute(getattr(source, "retry_after", None), outcome.wall_time)
    if seconds is not None:
        return seconds
    carrier = source if outcome.exception is None else getattr(source, "response", None)
    headers = getattr(carrier, "headers", None)
    get = getattr(headers, "get", None)
    if get is None:
        return None
    try:
        raw = get("retry-after")
        if raw is None:
            raw = get("Retry-After")
    except Exception:  # a headers object of an unknown kind: no hint rather than a crash
        return None
    return _from_attribute(raw, outcome.wall_time)


def _from_attribute(value: object, now: float) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        return seconds if seconds >= 0.0 else None  # NaN fails the comparison too
    if isinstance(value, str | bytes):
        return parse_retry_after(value, now=now)
    return None
