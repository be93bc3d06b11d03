"""Never executed: mypy --strict checks this file as a user's code would be written.

If a public signature changes in a way that breaks users, this stops type-checking.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from sysdesign_kit import (
    ManualClock,
    RateLimitDecision,
    RateLimited,
    RateLimiter,
    hit_all,
    hit_all_sync,
)
from sysdesign_kit.ratelimit import (
    LimitRule,
    MemoryBackend,
    RateLimitMiddleware,
    RuleSet,
    by_ip,
    tiered_limits,
)
from sysdesign_kit.ratelimit.redis import RedisBackend


async def direct(limiter: RateLimiter) -> bool:
    decision: RateLimitDecision = await limiter.hit("user:1", cost=2)
    seconds: float = decision.retry_after
    remaining: int = decision.remaining
    peeked = await limiter.peek("user:1")
    await limiter.reset("user:1")
    ok: bool = await limiter.try_acquire("user:1")
    return ok and peeked.allowed and seconds >= 0 and remaining >= 0


def blocking(limiter: RateLimiter) -> bool:
    return limiter.sync.hit("k").allowed and limiter.sync.try_acquire("k")


async def together(clock: ManualClock) -> list[bool]:
    backend = MemoryBackend(clock=clock)
    a = RateLimiter("20/minute", name="a", backend=backend, algorithm="sliding_window")
    b = RateLimiter("500/minute", name="b", backend=backend, shadow=True)
    sync = hit_all_sync([(a, "x"), (b, "y")])
    return [d.blocked for d in await hit_all([(a, "x"), (b, "y")]) + sync]


def on_redis(url: str) -> RateLimiter:
    backend = RedisBackend.from_url(url, prefix="app")
    return RateLimiter("100/minute", backend=backend, fail_open=False)


limiter = RateLimiter("5/second")


@limiter.limit(key=lambda user: f"user:{user}")
def send(user: str) -> int:
    return len(user)


@limiter.limit(wait=True, max_wait=1.0)
async def call() -> str:
    return "ok"


def handle(user: str) -> int:
    try:
        return send(user)
    except RateLimited as exc:
        return int(exc.retry_after)


async def app(scope: Scope, receive: Receive, send: Send) -> None: ...


rules = RuleSet([LimitRule(limiter, by_ip())])
protected = RateLimitMiddleware(app, limits=tiered_limits(trusted_proxies=["10.0.0.0/8"]))
custom = RateLimitMiddleware(protected, limits=rules, legacy_headers=True)
