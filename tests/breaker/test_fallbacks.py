"""Fallbacks: a value, a callable given the error, degrade, the last good value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sysdesign_kit.breaker import (
    CircuitBreaker,
    Default,
    Degrade,
    Fallback,
    FromError,
    LastGood,
    State,
)
from sysdesign_kit.breaker.fallbacks import as_fallback
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import CircuitOpen, ConfigurationError


class Down(Exception):
    pass


class NotFound(Exception):
    pass


def make(clock: ManualClock) -> CircuitBreaker:
    return CircuitBreaker("dep", clock=clock, minimum_calls=2, failure_on=Down, ignore=KeyError)


def flaky(state: dict[str, Any]) -> Callable[[str], str]:
    def fetch(item: str) -> str:
        error = state.get("error")
        if error is not None:
            raise error
        return f"fresh {item}"

    return fetch


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        ([], []),
        (Default(None), None),
        (Default(len), len),  # a callable returned as a value
        (lambda error: type(error).__name__, "Down"),
        (FromError(lambda error: f"error: {error}"), "error: db"),
        (Degrade(lambda item: f"generic {item}"), "generic book"),
    ],
)
def test_fallback_answers_a_counted_failure(
    clock: ManualClock, fallback: object, expected: object
) -> None:
    state: dict[str, Any] = {"error": Down("db")}
    fetch = make(clock)(fallback=fallback)(flaky(state))
    assert fetch("book") == expected


def test_fallback_answers_while_open_and_not_for_other_errors(clock: ManualClock) -> None:
    breaker = make(clock)
    seen: list[BaseException] = []

    def record(error: BaseException) -> str:
        seen.append(error)
        return "fallback"

    state: dict[str, Any] = {}
    fetch = breaker(fallback=record)(flaky(state))
    assert fetch("a") == "fresh a"
    state["error"] = Down()
    assert fetch("a") == "fallback"
    assert breaker.state is State.OPEN
    assert fetch("a") == "fallback"
    assert isinstance(seen[-1], CircuitOpen)
    breaker.reset()
    for error in (NotFound(), KeyError("ignored")):  # a success and an ignored error
        state["error"] = error
        with pytest.raises(type(error)):
            fetch("a")


def test_last_good_value_per_arguments(clock: ManualClock) -> None:
    state: dict[str, Any] = {}
    last = LastGood()
    fetch = make(clock)(fallback=last)(flaky(state))
    assert fetch("a") == "fresh a"
    assert fetch(item="b") == "fresh b"
    state["error"] = Down()
    assert fetch("a") == "fresh a"
    assert fetch(item="b") == "fresh b"
    with pytest.raises(CircuitOpen):
        fetch("never seen")  # nothing remembered, no otherwise: the error itself (now open)


def test_last_good_value_falls_back_to_otherwise(clock: ManualClock) -> None:
    state: dict[str, Any] = {"error": Down()}
    fetch = make(clock)(fallback=LastGood(otherwise=Degrade(lambda item: f"cheap {item}")))(
        flaky(state)
    )
    assert fetch("x") == "cheap x"
    assert LastGood(otherwise=0).otherwise(Down(), (), {}) == 0  # type: ignore[misc]


def test_last_good_value_with_a_store_and_key(clock: ManualClock) -> None:
    store: dict[object, Any] = {}
    state: dict[str, Any] = {}
    last = LastGood(store=store, key=lambda item: f"item:{item}")
    fetch = make(clock)(fallback=last)(flaky(state))
    fetch("a")
    assert store == {"item:a": "fresh a"}
    store["item:z"] = "from the cache"  # the cache component can fill the store itself
    state["error"] = Down()
    assert fetch("z") == "from the cache"


def test_last_good_default_store_is_bounded_and_skips_unhashable(clock: ManualClock) -> None:
    last = LastGood(max_entries=2)
    for n in range(5):
        last.remember((n,), {}, n)
    assert list(last.store) == [(3,), (4,)]
    last.remember(([1],), {}, "x")  # unhashable arguments: not remembered
    assert len(last.store) == 2
    with pytest.raises(Down):
        last(Down(), ([1],), {})
    last.remember((), {"b": 2, "a": 1}, "kw")
    assert last(Down(), (), {"a": 1, "b": 2}) == "kw"


async def test_async_fallbacks_may_be_awaitable(clock: ManualClock) -> None:
    breaker = make(clock)

    async def degraded(item: str) -> str:
        return f"async generic {item}"

    @breaker(fallback=Degrade(degraded))
    async def fetch(item: str) -> str:
        raise Down

    assert await fetch("a") == "async generic a"

    last = LastGood()
    calls = {"fail": False}

    @breaker(fallback=last)
    async def cached(item: str) -> str:
        if calls["fail"]:
            raise Down
        return f"fresh {item}"

    breaker.reset()
    assert await cached("k") == "fresh k"
    calls["fail"] = True
    assert await cached("k") == "fresh k"

    breaker.reset()

    @breaker(fallback=0)
    async def other() -> int:
        raise NotFound  # counted as a success: propagates

    with pytest.raises(NotFound):
        await other()


def test_a_custom_fallback(clock: ManualClock) -> None:
    class Stale(Fallback[str]):
        remembers = True

        def __init__(self) -> None:
            self.last = "nothing yet"

        def __call__(
            self, error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> str:
            return f"stale {self.last}"

        def remember(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
            self.last = result

    state: dict[str, Any] = {}
    fetch = make(clock)(fallback=Stale())(flaky(state))
    fetch("a")
    state["error"] = Down()
    assert fetch("b") == "stale fresh a"
    with pytest.raises(NotImplementedError):
        Fallback()(Down(), (), {})
    Fallback().remember((), {}, None)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FromError(3), "FromError needs a callable"),  # type: ignore[arg-type]
        (lambda: Degrade("x"), "Degrade needs a callable"),  # type: ignore[arg-type]
        (lambda: LastGood(max_entries=0), "max_entries"),
        (lambda: LastGood(key="k"), "key must be a callable"),  # type: ignore[arg-type]
    ],
)
def test_bad_fallbacks(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_as_fallback() -> None:
    default = Default(1)
    assert as_fallback(default) is default
    assert isinstance(as_fallback(print), FromError)
    assert isinstance(as_fallback("x"), Default)
    assert repr(as_fallback("x")) == "Default('x')"
