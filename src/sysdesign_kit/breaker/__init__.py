"""Circuit breakers: fail fast while a dependency is down, probe it, recover on their own.

One `CircuitBreaker` per dependency, for sync and async code: ``@breaker``,
``breaker.call(fn, ...)`` / ``await breaker.call_async(fn, ...)``, ``with breaker:`` /
``async with breaker:``, or the primitive ``acquire`` + ``on_success`` / ``on_error``.
Breakers are found by name in a `BreakerRegistry` (``get_breaker(name)`` on the process's
default one). The rules are pure functions in ``sysdesign_kit.breaker.state``.

``CircuitBreaker(name, shared=RedisBreakerState.from_url(url))`` shares one breaker's state
with every process using that name (``sysdesign_kit.breaker.redis``); `RedisBreakerState` is
imported on first use, so the ``redis`` extra stays optional.
"""

from typing import TYPE_CHECKING, Any

from sysdesign_kit.breaker.breaker import BreakerStats, CircuitBreaker, Permit
from sysdesign_kit.breaker.classify import NEVER_COUNTED
from sysdesign_kit.breaker.fallbacks import Default, Degrade, Fallback, FromError, LastGood
from sysdesign_kit.breaker.registry import BreakerRegistry, default_registry, get_breaker
from sysdesign_kit.breaker.state import BreakerPolicy, State, Status, Totals
from sysdesign_kit.breaker.windows import CountWindow, TimeWindow

if TYPE_CHECKING:
    from sysdesign_kit.breaker.redis import RedisBreakerState

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
    "RedisBreakerState",
    "State",
    "Status",
    "TimeWindow",
    "Totals",
    "default_registry",
    "get_breaker",
]


def __getattr__(name: str) -> Any:
    # Deferred so that importing sysdesign_kit.breaker never requires redis-py.
    if name == "RedisBreakerState":
        from sysdesign_kit.breaker.redis import RedisBreakerState

        return RedisBreakerState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
