"""Breakers by name: get-or-create, defaults, conflicting settings, listing, reset."""

from __future__ import annotations

import threading

import pytest

from sysdesign_kit.breaker import (
    BreakerRegistry,
    CircuitBreaker,
    CountWindow,
    State,
    TimeWindow,
    default_registry,
    get_breaker,
)
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import BreakerTransitioned, Event


def test_get_or_create_by_name(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    payments = registry.get("payments", failure_rate=0.25)
    assert registry.get("payments") is payments
    assert registry.get("payments", failure_rate=0.25) is payments
    assert registry["payments"] is payments
    assert payments.clock is clock
    assert payments.policy.failure_rate == 0.25
    assert "payments" in registry
    assert "users" not in registry
    assert len(registry) == 1


def test_defaults_and_listeners_apply_to_created_breakers(clock: ManualClock) -> None:
    events: list[Event] = []
    registry = BreakerRegistry(
        clock=clock, listeners=[events.append], minimum_calls=1, window=TimeWindow(10)
    )
    own: list[Event] = []
    breaker = registry.get("a", half_open_calls=1, listeners=[own.append])
    assert breaker.window == TimeWindow(10)
    assert breaker.policy.half_open_calls == 1
    breaker.force_open()
    assert [type(e) for e in events] == [BreakerTransitioned]
    assert events == own


def test_other_settings_for_an_existing_breaker_are_refused(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    registry.get("a", window=CountWindow(50), failure_on=(OSError,))
    registry.get("a", window=CountWindow(50), failure_on=(OSError,))
    registry.get("a", failure_if=lambda r: False, listeners=[print])  # functions not compared
    with pytest.raises(ConfigurationError, match=r"already exists with window="):
        registry.get("a", window=CountWindow(60))
    with pytest.raises(ConfigurationError, match=r"open_for=30\.0, not 10"):
        registry.get("a", open_for=10)
    with pytest.raises(ConfigurationError, match="not a CircuitBreaker setting"):
        registry.get("a", colour="red")


def test_add_remove_and_listing(clock: ManualClock) -> None:
    registry = BreakerRegistry(clock=clock)
    made = registry.add(CircuitBreaker("users", clock=clock))
    assert registry.add(made) is made
    with pytest.raises(ConfigurationError, match="already exists"):
        registry.add(CircuitBreaker("users", clock=clock))
    with pytest.raises(ConfigurationError, match="ready-made"):
        registry.get("users", open_for=5)
    registry.get("payments").force_open()
    registry.get("orders")
    assert registry.names() == ["orders", "payments", "users"]
    assert [b.name for b in registry] == ["users", "payments", "orders"]
    assert registry.states() == {
        "orders": State.CLOSED,
        "payments": State.OPEN,
        "users": State.CLOSED,
    }
    assert [s.name for s in registry.stats()] == ["orders", "payments", "users"]
    registry.reset_all()
    assert set(registry.states().values()) == {State.CLOSED}
    assert registry.remove("orders") is not None
    assert registry.remove("orders") is None
    assert registry.names() == ["payments", "users"]
    with pytest.raises(KeyError):
        registry["orders"]


def test_bad_defaults_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="failure_rate"):
        BreakerRegistry(failure_rate=2)
    with pytest.raises(ConfigurationError, match="name"):
        BreakerRegistry(name="x")


def test_concurrent_first_lookups_create_one_breaker() -> None:
    registry = BreakerRegistry()
    start = threading.Barrier(8)
    found: list[CircuitBreaker] = []

    def look() -> None:
        start.wait()
        found.append(registry.get("shared"))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(b) for b in found}) == 1


def test_the_process_default() -> None:
    name = "tests.breaker.process-default"
    breaker = get_breaker(name, open_for=5.0)
    try:
        assert get_breaker(name) is breaker
        assert default_registry()[name] is breaker
    finally:
        default_registry().remove(name)
