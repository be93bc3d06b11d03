"""Probabilistic early refresh: XFetch (Vattani, Chierichetti and Lowenstein, VLDB 2015).

Each reader of a fresh entry recomputes it early when::

    now - delta * beta * ln(u) >= expiry        u uniform in (0, 1]

where ``delta`` is how long the last load took and ``beta`` scales eagerness (1.0 is the
paper's optimum; above 1 refreshes earlier, 0 never). The chance grows as the expiry nears,
so under steady traffic one reader refreshes shortly before the entry expires and nobody ever
finds it missing; the more traffic, the earlier (and the more surely) one of them does.

The chance that a reader ``g`` seconds before expiry refreshes is ``exp(-g / (delta *
beta))``. Beyond `HORIZON` times ``delta * beta`` it is below ``exp(-30)`` (about 1e-13), so
a hit that far from expiry draws no random number at all: the common hit pays one
multiplication and one comparison.
"""

from __future__ import annotations

import math

__all__ = ["HORIZON", "refresh_probability", "should_refresh_early"]

#: In units of ``delta * beta``: how far before expiry readers start drawing.
HORIZON = 30.0


def should_refresh_early(now: float, expiry: float, delta: float, beta: float, u: float) -> bool:
    """XFetch's decision for one reader.

    Args:
        now: the current time, on the same clock as ``expiry``.
        expiry: when the entry stops being fresh.
        delta: seconds the last load took (>= 0).
        beta: eagerness (>= 0; 0 never refreshes early).
        u: a uniform draw in (0, 1] (``1.0 - random.random()``).

    Returns:
        Whether this reader should recompute the entry now.
    """
    if now >= expiry:
        return True
    if delta <= 0.0 or beta <= 0.0:
        return False
    return now - delta * beta * math.log(u) >= expiry


def refresh_probability(now: float, expiry: float, delta: float, beta: float) -> float:
    """The chance that `should_refresh_early` says yes for a uniform ``u``."""
    if now >= expiry:
        return 1.0
    if delta <= 0.0 or beta <= 0.0:
        return 0.0
    return math.exp(-(expiry - now) / (delta * beta))
