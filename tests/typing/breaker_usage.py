"""Never executed: mypy --strict checks this file as a user's code would be written.

Decorated functions keep their exact signatures (the ``type: ignore`` lines would be reported
as unused if a decorator erased them); if the public breaker API changes in a way that breaks
users, this stops type-checking.
"""

from __future__ import annotations

from sysdesign_kit import CircuitOpen, ManualClock
from sysdesign_kit.breaker import (
    BreakerPolicy,
    BreakerRegistry,
    BreakerStats,
    CircuitBreaker,
    CountWindow,
    Default,
    Degrade,
    FromError,
    LastGood,
    Permit,
    State,
    TimeWindow,
    default_registry,
    get_breaker,
)
from sysdesign_kit.events import Event

events: list[Event] = []

payments = CircuitBreaker(
    "payments",
    failure_rate=0.5,
    window=TimeWindow(30.0, buckets=10),
    minimum_calls=10,
    open_for=30.0,
    open_for_growth=2.0,
    open_for_max=240.0,
    half_open_calls=3,
    slow_call_threshold=2.0,
    slow_call_rate=0.8,
    failure_on=(TimeoutError, ConnectionError),
    ignore=KeyError,
    failure_if=lambda status: status == 503,
    clock=ManualClock(),
    listeners=[events.append],
)
users = get_breaker("users", window=CountWindow(50), failure_on=lambda exc: "503" in str(exc))


@payments
def charge(user: str, amount: int, *, currency: str = "EUR") -> str:
    return f"{user}:{amount}{currency}"


@users
async def profile(user_id: int) -> dict[str, int]:
    return {"id": user_id}


@users(fallback=Default([]))
def friends(user_id: int) -> list[int]:
    return [user_id]


@users(fallback=Degrade(lambda user_id: {"id": user_id}))
async def cached_profile(user_id: int) -> dict[str, int]:
    return {"id": user_id}


@payments(fallback=LastGood(otherwise=FromError(lambda exc: -1.0)))
def quote(item: str) -> float:
    return 1.0


@payments(fallback=lambda exc: "unavailable")
def status() -> str:
    return "ok"


class Client:
    @users
    def get(self, path: str) -> bytes:
        return path.encode()


def ways_in() -> None:
    receipt: str = charge("ann", 10, currency="USD")
    found: list[int] = friends(1)
    price: float = quote("book")
    body: bytes = Client().get("/")
    length: int = payments.call(len, "abc")
    charge("ann", "ten")  # type: ignore[arg-type]
    friends()  # type: ignore[call-arg]
    permit: Permit = payments.acquire()
    payments.on_success(permit, duration=0.1)
    payments.on_error(payments.acquire(), TimeoutError(), 0.2)
    payments.on_result(payments.acquire(), 503)
    payments.on_failure(payments.acquire())
    payments.release(payments.acquire())
    with payments:
        pass
    try:
        status()
    except CircuitOpen as exc:
        wait: float = exc.retry_after
        print(wait)
    print(receipt, found, price, body, length)


async def async_ways_in() -> None:
    data: dict[str, int] = await profile(7)
    other: dict[str, int] = await cached_profile(7)
    again: dict[str, int] = await users.call_async(profile, 8)
    await profile("seven")  # type: ignore[arg-type]
    async with users:
        pass
    print(data, other, again)


def operators(registry: BreakerRegistry) -> dict[str, State]:
    breaker = registry.get("orders", minimum_calls=5)
    breaker.force_open()
    breaker.force_closed()
    breaker.reset()
    stats: BreakerStats = breaker.stats()
    state: State = breaker.state
    left: float = breaker.retry_after + stats.failure_rate + breaker.failure_rate
    policy: BreakerPolicy = breaker.policy
    print(state, left, policy.open_duration(2), [s.name for s in registry.stats()])
    default_registry().reset_all()
    return registry.states()
