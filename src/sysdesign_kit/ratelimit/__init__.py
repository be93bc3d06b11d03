"""Rate limiting: token bucket (GCRA), sliding window and fixed window, in memory or Redis.

HTTP integration (`RateLimitMiddleware`, `tiered_limits`, key functions, headers) is pure
ASGI and needs no optional package; the FastAPI dependency lives in
``sysdesign_kit.ratelimit.fastapi`` and is imported only from there. ``RedisBackend`` is
imported on first use, so the ``redis`` extra stays optional.
"""

from typing import TYPE_CHECKING, Any

from sysdesign_kit.ratelimit.backend import backend_from_url
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.decorator import rate_limited
from sysdesign_kit.ratelimit.headers import RateLimitHeaders, retry_after_seconds
from sysdesign_kit.ratelimit.keys import (
    ClientIP,
    KeyFunc,
    by_api_key,
    by_ip,
    by_route,
    by_subject,
    by_subject_or_ip,
)
from sysdesign_kit.ratelimit.limiter import RateLimiter, SyncRateLimiter, hit_all, hit_all_sync
from sysdesign_kit.ratelimit.memory import MemoryBackend
from sysdesign_kit.ratelimit.middleware import RateLimitMiddleware
from sysdesign_kit.ratelimit.rate import Rate, parse_rate
from sysdesign_kit.ratelimit.tiers import LimitRule, RuleSet, TieredLimits, tiered_limits

if TYPE_CHECKING:
    from sysdesign_kit.ratelimit.redis import RedisBackend

__all__ = [
    "ClientIP",
    "KeyFunc",
    "LimitRule",
    "MemoryBackend",
    "Rate",
    "RateLimitDecision",
    "RateLimitHeaders",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisBackend",
    "RuleSet",
    "SyncRateLimiter",
    "TieredLimits",
    "backend_from_url",
    "by_api_key",
    "by_ip",
    "by_route",
    "by_subject",
    "by_subject_or_ip",
    "hit_all",
    "hit_all_sync",
    "parse_rate",
    "rate_limited",
    "retry_after_seconds",
    "tiered_limits",
]


def __getattr__(name: str) -> Any:
    # Deferred so that importing sysdesign_kit.ratelimit never requires redis-py.
    if name == "RedisBackend":
        from sysdesign_kit.ratelimit.redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
