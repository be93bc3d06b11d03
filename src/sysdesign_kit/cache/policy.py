"""`CachePolicy`: how long entries stay fresh, how stale they may be served, and when to
refresh them early. A `Cache` has one; each ``@cached`` function may override parts of it.

The seed's product cache is the default: fresh for one hour (`PRODUCT_TTL`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from sysdesign_kit.errors import ConfigurationError

__all__ = ["PRODUCT_TTL", "CachePolicy"]

#: The seed architecture's product cache: one hour.
PRODUCT_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Freshness and stampede settings (all durations in seconds).

    Attributes:
        ttl: how long a loaded value is fresh (served as a hit).
        stale_while_revalidate: after ``ttl``, how long the value is still served at once
            while one caller reloads it in the background (RFC 5861). 0: never.
        stale_if_error: after ``ttl``, how long the value is served when the loader fails
            (RFC 5861); the loader's exception is raised only past it. 0: never.
        negative_ttl: how long a loader's None ("not found") is cached as a negative entry.
            0 (the default): None is not cached and the next call loads again.
        early_refresh_beta: XFetch's beta: how eagerly a fresh entry is reloaded in the
            background as its expiry nears (1.0 as in the paper; 0 turns it off).

    Raises:
        ConfigurationError: a duration that is negative, not finite, or (``ttl``) zero; a
            negative beta.
    """

    ttl: float = PRODUCT_TTL
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    negative_ttl: float = 0.0
    early_refresh_beta: float = 1.0

    def __post_init__(self) -> None:
        _seconds("ttl", self.ttl, positive=True)
        _seconds("stale_while_revalidate", self.stale_while_revalidate)
        _seconds("stale_if_error", self.stale_if_error)
        _seconds("negative_ttl", self.negative_ttl)
        _seconds("early_refresh_beta", self.early_refresh_beta, unit="")

    @property
    def keep(self) -> float:
        """How long the backend keeps an entry: fresh, then the longer stale window."""
        return self.ttl + max(self.stale_while_revalidate, self.stale_if_error)

    def override(self, **changes: Any) -> CachePolicy:
        """This policy with the given fields changed (None values are ignored)."""
        given = {name: value for name, value in changes.items() if value is not None}
        return replace(self, **given) if given else self


def _seconds(
    name: str, value: object, *, positive: bool = False, unit: str = " of seconds"
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number{unit}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be finite and {need}, got {value!r}")
