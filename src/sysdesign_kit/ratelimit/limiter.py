"""The rate limiter facade: one policy (rate + algorithm) over a backend.

``await limiter.hit(key)`` checks and charges; ``peek`` looks without charging; ``reset``
forgets a key. ``limiter.sync`` is the blocking twin over the same backend and core.
``hit_all`` checks several limiters together, all-or-nothing, in one backend round trip.

When the backend fails (Redis down or slow) the limiter applies its failure policy: fail open
(allow, the default) or fail closed (deny), publishes a `BackendFailure` event and returns a
decision marked ``degraded``. No driver exception reaches the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import (
    BackendUnavailable,
    ConfigurationError,
    InvalidCost,
    InvalidKey,
)
from sysdesign_kit.events import BackendFailure, Listener, Publisher, RateLimitDecided
from sysdesign_kit.ratelimit.backend import (
    ALGORITHMS,
    AlgorithmName,
    BoundLimit,
    LimiterBackend,
    Raw,
    backend_from_url,
)
from sysdesign_kit.ratelimit.decision import RateLimitDecision
from sysdesign_kit.ratelimit.memory import MemoryBackend
from sysdesign_kit.ratelimit.rate import Rate, parse_rate

__all__ = ["MAX_KEY_LENGTH", "RateLimiter", "SyncRateLimiter", "hit_all", "hit_all_sync"]

# tuple.__new__ builds a decision without NamedTuple's Python-level __new__ frame.
_new: Any = tuple.__new__

#: Longest key accepted, in characters; longer keys are a client trying to exhaust memory.
#: (Spelled as a literal on the hot paths below, where a global lookup costs.)
MAX_KEY_LENGTH = 1024

F = TypeVar("F", bound=Callable[..., Any])


class RateLimiter:
    """One rate-limit policy, checked against a backend.

    Args:
        rate: ``"100/minute"``-style text or a `Rate`.
        algorithm: ``"token_bucket"`` (GCRA, the default), ``"sliding_window"`` or
            ``"fixed_window"``.
        name: the policy name used in headers, events and Redis keys (default: the rate text).
        backend: a backend object or URL (``"memory://"``, ``"redis://..."``); default in memory.
        fail_open: when the backend fails, allow (True, default) or deny (False).
        shadow: decide, publish and report, but never block (for rolling out a new limit).
        clock: time source for the default memory backend and for waiting.
        listeners: callables receiving `RateLimitDecided` and `BackendFailure` events.
    """

    def __init__(
        self,
        rate: str | Rate,
        *,
        algorithm: AlgorithmName = "token_bucket",
        name: str | None = None,
        backend: LimiterBackend | str | None = None,
        fail_open: bool = True,
        shadow: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self.rate = parse_rate(rate)
        canonical = ALGORITHMS.get(algorithm)
        if canonical is None:
            raise ConfigurationError(f"algorithm={algorithm!r} is not one of {sorted(ALGORITHMS)}")
        self.algorithm = canonical
        self.name = name if name is not None else str(self.rate)
        if not self.name or len(self.name) > 200:
            raise ConfigurationError("name must be 1..200 characters")
        if backend is None:
            backend = MemoryBackend(clock=clock)
        elif isinstance(backend, str):
            backend = backend_from_url(backend)
        self.backend: LimiterBackend = backend
        self.fail_open = fail_open
        self.shadow = shadow
        self.clock = clock
        self.events = Publisher(listeners)
        self.capacity = self.rate.burst if canonical == "gcra" else self.rate.limit
        self._bound: BoundLimit = backend.bind(canonical, self.rate, self.name)
        self._bound.owner = self
        self._local = backend.local
        # The memory backend answers try_acquire without building a decision.
        self._acquire: Callable[[str, int], bool] | None = (
            getattr(self._bound, "acquire", None) if not shadow else None
        )
        self._sync: SyncRateLimiter | None = None

    def __repr__(self) -> str:
        return (
            f"RateLimiter({str(self.rate)!r}, algorithm={self.algorithm!r}, "
            f"name={self.name!r}, backend={self.backend.kind!r})"
        )

    @property
    def window(self) -> float:
        """Seconds in the policy's window (the rate's period)."""
        return self.rate.period

    @property
    def sync(self) -> SyncRateLimiter:
        """The blocking twin of this limiter (same policy, same backend)."""
        if self._sync is None:
            self._sync = SyncRateLimiter(self)
        return self._sync

    def limit(
        self,
        *,
        key: str | Callable[..., str] | None = None,
        cost: int | Callable[..., int] = 1,
        wait: bool = False,
        max_wait: float | None = None,
    ) -> Callable[[F], F]:
        """Decorate a sync or async function with this limiter (see `rate_limited`)."""
        from sysdesign_kit.ratelimit.decorator import rate_limited

        return rate_limited(self, key=key, cost=cost, wait=wait, max_wait=max_wait)

    # -- the async API ------------------------------------------------------------------

    async def hit(self, key: str, cost: int = 1) -> RateLimitDecision:
        """Check ``key`` and charge ``cost`` if allowed (a denial charges nothing).

        Raises:
            InvalidKey: empty, too long, non-string or non-UTF-8 key.
            InvalidCost: cost not an int in 1..capacity.
        """
        if cost != 1 or type(key) is not str or not key or len(key) > 1024 or not key.isascii():
            self._validate(key, cost)
        if self._local:
            decision = self._bound.decide(key, cost)
        else:
            try:
                decision = await self._bound.adecide(key, cost)
            except BackendUnavailable as exc:
                return self._degraded(key, cost, exc, "hit")
        if self.events.listeners:
            self._publish(key, cost, decision)
        return decision

    async def try_acquire(self, key: str, cost: int = 1) -> bool:
        """The cheapest check: charge like `hit` and answer only whether the call may go on
        (allowed, or denied in shadow mode).

        Raises:
            InvalidKey: empty, too long, non-string or non-UTF-8 key.
            InvalidCost: cost not an int in 1..capacity.
        """
        acquire = self._acquire
        if acquire is not None and not self.events.listeners:
            if cost != 1 or type(key) is not str or not key or len(key) > 1024 or not key.isascii():
                self._validate(key, cost)
            return acquire(key, cost)
        return not (await self.hit(key, cost)).blocked

    async def peek(self, key: str) -> RateLimitDecision:
        """Look without charging: would ``hit(key)`` be allowed now, and when if not.

        ``remaining`` and ``reset_after`` describe the key as it stands (nothing charged);
        ``allowed`` and ``retry_after`` answer for a request of cost 1.
        """
        _check_key(key)
        if self._local:
            raw = self._bound.peek(key)
        else:
            try:
                raw = await self._bound.apeek(key)
            except BackendUnavailable as exc:
                return self._degraded(key, 0, exc, "peek")
        return RateLimitDecision(*raw, self)

    async def reset(self, key: str) -> None:
        """Give ``key`` its whole quota back.

        Raises:
            BackendUnavailable: the backend could not be reached (a reset is an admin act,
                so it is not silently dropped).
        """
        _check_key(key)
        await self._bound.areset(key)

    # -- shared by both APIs ------------------------------------------------------------

    def _validate(self, key: object, cost: object) -> None:
        _check_key(key)
        self._check_cost(cost)

    def _check_cost(self, cost: object) -> None:
        if type(cost) is not int or cost < 1:
            raise InvalidCost(f"cost must be a positive int, got {cost!r}")
        if cost > self.capacity:
            raise InvalidCost(
                f"cost {cost} exceeds the capacity {self.capacity} of policy {self.name!r}: "
                "it could never be allowed"
            )

    def _degraded(
        self, key: str, cost: int, exc: BackendUnavailable, operation: str
    ) -> RateLimitDecision:
        outcome = "fail_open" if self.fail_open else "fail_closed"
        if self.events.listeners:
            self.events.publish(
                BackendFailure(
                    component=f"ratelimit:{self.name}",
                    backend=self.backend.kind,
                    operation=operation,
                    error=f"{type(exc.__cause__ or exc).__name__}: {exc}",
                    outcome=outcome,
                )
            )
        if self.fail_open:
            decision = RateLimitDecision(True, self.capacity, 0, 0, self, True)
        else:
            # Tell the client to come back in one token's time, not at once.
            retry = self.rate.interval_us if self.algorithm == "gcra" else self.rate.period_us
            decision = RateLimitDecision(False, 0, retry, retry, self, True)
        if self.events.listeners:
            self._publish(key, cost, decision)
        return decision

    def _publish(self, key: str, cost: int, decision: RateLimitDecision) -> None:
        self.events.publish(
            RateLimitDecided(
                component=f"ratelimit:{self.name}",
                policy=self.name,
                key=key,
                allowed=decision.allowed,
                limit=self.capacity,
                remaining=decision.remaining,
                retry_after=decision.retry_after,
                cost=cost,
                shadow=self.shadow,
                degraded=decision.degraded,
            )
        )


class SyncRateLimiter:
    """The blocking twin of a `RateLimiter`: same policy, backend and events.

    Get one from ``limiter.sync``.
    """

    __slots__ = ("_bound", "_events", "limiter")

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self._bound = limiter._bound
        self._events = limiter.events

    def hit(self, key: str, cost: int = 1) -> RateLimitDecision:
        """Blocking `RateLimiter.hit`."""
        if cost != 1 or type(key) is not str or not key or len(key) > 1024 or not key.isascii():
            self.limiter._validate(key, cost)
        try:
            decision = self._bound.decide(key, cost)
        except BackendUnavailable as exc:
            return self.limiter._degraded(key, cost, exc, "hit")
        if self._events.listeners:
            self.limiter._publish(key, cost, decision)
        return decision

    def try_acquire(self, key: str, cost: int = 1) -> bool:
        """Blocking `RateLimiter.try_acquire`."""
        acquire = self.limiter._acquire
        if acquire is not None and not self._events.listeners:
            if cost != 1 or type(key) is not str or not key or len(key) > 1024 or not key.isascii():
                self.limiter._validate(key, cost)
            return acquire(key, cost)
        return not self.hit(key, cost).blocked

    def peek(self, key: str) -> RateLimitDecision:
        """Blocking `RateLimiter.peek`."""
        _check_key(key)
        try:
            raw = self._bound.peek(key)
        except BackendUnavailable as exc:
            return self.limiter._degraded(key, 0, exc, "peek")
        return RateLimitDecision(*raw, self.limiter)

    def reset(self, key: str) -> None:
        """Blocking `RateLimiter.reset`."""
        _check_key(key)
        self._bound.reset(key)


async def hit_all(
    items: Sequence[tuple[RateLimiter, str]], cost: int = 1
) -> list[RateLimitDecision]:
    """Check several (limiter, key) pairs together and charge them all-or-nothing.

    A request denied by one limit consumes nothing from the others. All limiters must share
    one backend; on Redis this is a single script call (one round trip).
    """
    backend, pairs = _prepare_all(items, cost)
    if backend.local:
        raws = backend.decide_many(pairs, cost)
    else:
        try:
            raws = await backend.adecide_many(pairs, cost)
        except BackendUnavailable as exc:
            return [limiter._degraded(key, cost, exc, "hit_all") for limiter, key in items]
    return _finish_all(items, raws, cost)


def hit_all_sync(
    items: Sequence[tuple[RateLimiter, str]], cost: int = 1
) -> list[RateLimitDecision]:
    """Blocking `hit_all`."""
    backend, pairs = _prepare_all(items, cost)
    try:
        raws = backend.decide_many(pairs, cost)
    except BackendUnavailable as exc:
        return [limiter._degraded(key, cost, exc, "hit_all") for limiter, key in items]
    return _finish_all(items, raws, cost)


def _prepare_all(
    items: Sequence[tuple[RateLimiter, str]], cost: int
) -> tuple[LimiterBackend, list[tuple[BoundLimit, str]]]:
    if not items:
        raise ConfigurationError("hit_all needs at least one (limiter, key) pair")
    backend = items[0][0].backend
    pairs = []
    for limiter, key in items:
        if limiter.backend is not backend:
            raise ConfigurationError("limiters checked together must share one backend object")
        if cost != 1 or type(key) is not str or not key or len(key) > 1024 or not key.isascii():
            limiter._validate(key, cost)
        pairs.append((limiter._bound, key))
    return backend, pairs


def _finish_all(
    items: Sequence[tuple[RateLimiter, str]], raws: list[Raw], cost: int
) -> list[RateLimitDecision]:
    decisions: list[RateLimitDecision] = []
    for (limiter, key), (allowed, remaining, reset, retry) in zip(items, raws, strict=True):
        decision = _new(RateLimitDecision, (allowed, remaining, reset, retry, limiter, False))
        if limiter.events.listeners:
            limiter._publish(key, cost, decision)
        decisions.append(decision)
    return decisions


def _check_key(key: object) -> None:
    if type(key) is not str:
        raise InvalidKey(f"a key must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidKey("a key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"a key must be at most {MAX_KEY_LENGTH} characters, got {len(key)}")
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKey("a key must be encodable as UTF-8") from None
