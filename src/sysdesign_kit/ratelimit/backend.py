"""What a rate-limit backend provides, whatever stores the state.

A backend *binds* one (algorithm, rate, policy name) into a `BoundLimit` that decides for
one key; ``decide_many`` checks several bound limits together, all-or-nothing, in one step
(one Lua script on Redis); ``peek`` answers as ``decide`` would without charging.

``decide`` answers with a `RateLimitDecision` naming the bound's ``owner`` (the limiter that
bound it, set right after ``bind``); ``peek`` and ``decide_many`` answer with `Raw` tuples
``(allowed, remaining, reset_us, retry_us)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from sysdesign_kit.ratelimit.rate import Rate

if TYPE_CHECKING:
    from sysdesign_kit.ratelimit.decision import RateLimitDecision
    from sysdesign_kit.ratelimit.limiter import RateLimiter

__all__ = ["ALGORITHMS", "AlgorithmName", "BoundLimit", "LimiterBackend", "Raw", "backend_from_url"]

Raw = tuple[bool, int, int, int]
AlgorithmName = Literal["token_bucket", "gcra", "sliding_window", "fixed_window"]
ALGORITHMS: dict[str, str] = {
    "token_bucket": "gcra",
    "gcra": "gcra",
    "sliding_window": "sliding_window",
    "fixed_window": "fixed_window",
}


class BoundLimit(Protocol):
    """One policy on one backend; decides for a key."""

    algorithm: str
    rate: Rate
    name: str
    owner: RateLimiter | None

    def decide(self, key: str, cost: int) -> RateLimitDecision:
        """Check and charge ``cost``, blocking."""
        ...

    async def adecide(self, key: str, cost: int) -> RateLimitDecision:
        """Check and charge ``cost``."""
        ...

    def peek(self, key: str) -> Raw:
        """Without charging: whether ``decide(key, 1)`` would allow and its retry time, with
        ``remaining`` and ``reset_us`` as they stand now; blocking."""
        ...

    async def apeek(self, key: str) -> Raw:
        """Without charging: whether ``decide(key, 1)`` would allow and its retry time, with
        ``remaining`` and ``reset_us`` as they stand now."""
        ...

    def reset(self, key: str) -> None:
        """Forget the key's state: its whole quota is back."""
        ...

    async def areset(self, key: str) -> None:
        """Forget the key's state: its whole quota is back."""
        ...


class LimiterBackend(Protocol):
    """Stores rate-limit state; memory and Redis implement it."""

    #: True when decisions are in-process and never wait (the async API skips a hop).
    local: bool
    #: Short name for events and errors ("memory", "redis").
    kind: str

    def bind(self, algorithm: str, rate: Rate, name: str) -> BoundLimit:
        """A decider for one policy (``algorithm`` is a canonical name from ALGORITHMS)."""
        ...

    def decide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        """Check all; charge all only if every one allows. One round trip.

        When some deny, nothing is charged: denying entries carry their denial, the others
        their state as it stands (as with ``cost == 0``)."""
        ...

    async def adecide_many(self, items: Sequence[tuple[BoundLimit, str]], cost: int) -> list[Raw]:
        """Check all; charge all only if every one allows. One round trip."""
        ...


# Backends by URL scheme, imported only when asked for (redis is an optional extra).
_SCHEMES: dict[str, str] = {
    "memory": "sysdesign_kit.ratelimit.memory:MemoryBackend",
    "redis": "sysdesign_kit.ratelimit.redis:RedisBackend",
    "rediss": "sysdesign_kit.ratelimit.redis:RedisBackend",
    "unix": "sysdesign_kit.ratelimit.redis:RedisBackend",
}


def backend_from_url(url: str, **options: object) -> LimiterBackend:
    """Make a backend from a URL: ``memory://``, ``redis://host:6379/0``, ``rediss://``,
    ``unix:///path/to/redis.sock``.

    Raises:
        ConfigurationError: unknown scheme or malformed URL.
    """
    import importlib

    from sysdesign_kit.errors import ConfigurationError

    scheme = url.partition("://")[0].lower() if "://" in url else ""
    target = _SCHEMES.get(scheme)
    if target is None:
        raise ConfigurationError(
            f"backend URL {url!r}: scheme {scheme!r} is not one of {sorted(_SCHEMES)}"
        )
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    if scheme == "memory":
        return factory(**options)  # type: ignore[no-any-return]
    return factory.from_url(url, **options)  # type: ignore[no-any-return]
