"""Rate limiting: token bucket (GCRA), sliding window and fixed window, in memory or Redis."""

from sysdesign_kit.ratelimit.backend import backend_from_url
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.limiter import RateLimiter, SyncRateLimiter, hit_all, hit_all_sync
from sysdesign_kit.ratelimit.memory import MemoryBackend
from sysdesign_kit.ratelimit.rate import Rate, parse_rate

__all__ = [
    "MemoryBackend",
    "Rate",
    "RateLimitDecision",
    "RateLimiter",
    "SyncRateLimiter",
    "backend_from_url",
    "hit_all",
    "hit_all_sync",
    "parse_rate",
]
