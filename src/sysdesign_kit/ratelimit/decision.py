"""The answer a limiter gives for one key."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sysdesign_kit.ratelimit.limiter import RateLimiter

__all__ = ["RateLimitDecision"]


class RateLimitDecision(NamedTuple):
    """What one limiter decided for one key.

    A tuple so that building one on the hot path costs next to nothing; times are kept in
    whole microseconds and offered in seconds by the properties.

    Attributes:
        allowed: the algorithm's verdict. In shadow mode a denied request still runs
            (see `blocked`).
        remaining: requests of cost 1 still allowed now.
        reset_us: microseconds until the key's whole quota is back.
        retry_us: when denied, microseconds until the same request would be allowed.
        limiter: the limiter (policy) that decided.
        degraded: True when the backend failed and the failure policy decided.
    """

    allowed: bool
    remaining: int
    reset_us: int
    retry_us: int
    limiter: RateLimiter
    degraded: bool = False

    @property
    def limit(self) -> int:
        """The policy's capacity: the burst of a token bucket, else the quota per window."""
        return self.limiter.capacity

    @property
    def blocked(self) -> bool:
        """True when the caller must be refused (denied and not in shadow mode)."""
        return not self.allowed and not self.limiter.shadow

    @property
    def reset_after(self) -> float:
        """Seconds until the key's whole quota is back."""
        return self.reset_us / 1_000_000

    @property
    def retry_after(self) -> float:
        """Seconds until the same request would be allowed (0 when allowed)."""
        return self.retry_us / 1_000_000

    @property
    def policy(self) -> str:
        """The policy name (the limiter's ``name``)."""
        return self.limiter.name
