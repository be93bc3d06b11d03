"""Circuit breakers: fail fast while a dependency is down, probe it, recover on their own.

One `CircuitBreaker` per dependency, for sync and async code: ``@breaker``,
``breaker.call(fn, ...)`` / ``await breaker.call_async(fn, ...)``, ``with breaker:`` /
``async with breaker:``, or the primitive ``acquire`` + ``on_success`` / ``on_error``.
Breakers are found by name in a `BreakerRegistry` (``get_breaker(name)`` on the process's
default one). The rules are pure functions in ``sysdesign_kit.breaker.state``.
"""

from sysdesign_kit.breaker.breaker import BreakerStats, CircuitBreaker, Permit
from sysdesign_kit.breaker.classify import NEVER_COUNTED
from sysdesign_kit.breaker.fallbacks import Default, Degrade, Fallback, FromError, LastGood
from sysdesign_kit.breaker.registry import BreakerRegistry, default_registry, get_breaker
from sysdesign_kit.breaker.state import BreakerPolicy, State, Status, Totals
from sysdesign_kit.breaker.windows import CountWindow, TimeWindow

__all__ = [
    "NEVER_COUNTED",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerStats",
    "CircuitBreaker",
    "CountWindow",
    "Default",
    "Degrade",
    "Fallback",
    "FromError",
    "LastGood",
    "Permit",
    "State",
    "Status",
    "TimeWindow",
    "Totals",
    "default_registry",
    "get_breaker",
]
