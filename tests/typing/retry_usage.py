"""Never executed: mypy --strict checks this file as a user's code would be written.

Decorated functions keep their exact signatures; if the public retry API changes in a way
that breaks users, this stops type-checking.
"""

from __future__ import annotations

import random

from sysdesign_kit import CircuitOpen, ManualClock
from sysdesign_kit.events import Event
from sysdesign_kit.retry import (
    Attempt,
    Backoff,
    Outcome,
    Retry,
    RetryBudget,
    current_attempt,
    default_retry_after,
    parse_retry_after,
    retry,
    testing,
)

budget = RetryBudget(ratio=0.2, min_retries_per_second=10.0, ttl=10.0)
events: list[Event] = []


@retry(on=ConnectionError)
def read(path: str, *, size: int = 10) -> bytes:
    attempt: Attempt | None = current_attempt()
    timeout: float | None = attempt.remaining if attempt is not None else None
    return path.encode()[:size] if timeout is None else b""


@Retry(on=(ConnectionError, TimeoutError), attempts=3, jitter="decorrelated", budget=budget)
async def fetch(url: str, retries_seen: list[int]) -> dict[str, int]:
    return {url: len(retries_seen)}


def status_hint(outcome: Outcome) -> float | None:
    return default_retry_after(outcome) or parse_retry_after("5", now=outcome.wall_time)


policy = Retry(
    on=lambda exc: isinstance(exc, OSError) and not isinstance(exc, CircuitOpen),
    on_result=lambda status: status in (502, 503, 504),
    deadline=None,
    retry_after=status_hint,
    retry_after_max=10.0,
    clock=ManualClock(),
    rng=random.Random(7),
    listeners=[events.append],
    name="inventory",
)


def status(code: int) -> int:
    return code


async def use() -> None:
    data: bytes = read("p", size=3)
    page: dict[str, int] = await fetch("u", [])
    code: int = policy.call(status, 503)
    doubled: int = await policy.acall(_double, 21)
    for attempt in policy:
        with attempt:
            attempt.result = status(200)
    async for each in policy.replace(budget=RetryBudget()):
        with each:
            number: int = each.number
            left: float | None = each.remaining
            waited: float = each.delay + each.elapsed
    with testing.instant(attempts=1):
        testing.set_testing(False)
    delays: list[float] = [next(Backoff(jitter="equal").delays())]
    print(data, page, code, doubled, number, left, waited, delays)


async def _double(x: int) -> int:
    return x * 2
