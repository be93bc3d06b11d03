"""sysdesign_kit: resilience and edge middleware for Python services.

Public names only; every part lives in its own subpackage (``sysdesign_kit.ratelimit`` ...).
"""

from sysdesign_kit.breaker import BreakerRegistry, CircuitBreaker, get_breaker
from sysdesign_kit.cache import Cache, cached
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock, VirtualClock
from sysdesign_kit.errors import (
    BackendUnavailable,
    CircuitOpen,
    ConfigurationError,
    InvalidCost,
    InvalidInput,
    InvalidKey,
    InvalidRate,
    RateLimited,
    Rejected,
    SysdesignError,
    Unserializable,
    ValueTooLarge,
)
from sysdesign_kit.ratelimit import RateLimitDecision, RateLimiter, hit_all, hit_all_sync
from sysdesign_kit.retry import Retry, RetryBudget, current_attempt

__version__ = "0.1.0"

__all__ = [
    "SYSTEM_CLOCK",
    "BackendUnavailable",
    "BreakerRegistry",
    "Cache",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "ConfigurationError",
    "InvalidCost",
    "InvalidInput",
    "InvalidKey",
    "InvalidRate",
    "ManualClock",
    "RateLimitDecision",
    "RateLimited",
    "RateLimiter",
    "Rejected",
    "Retry",
    "RetryBudget",
    "SysdesignError",
    "SystemClock",
    "Unserializable",
    "ValueTooLarge",
    "VirtualClock",
    "__version__",
    "cached",
    "current_attempt",
    "get_breaker",
    "hit_all",
    "hit_all_sync",
]
