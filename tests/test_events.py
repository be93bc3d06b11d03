"""Events: process-wide subscription reaches every component; a broken sink breaks nothing."""

from __future__ import annotations

import dataclasses

import pytest

from sysdesign_kit import RateLimiter
from sysdesign_kit.events import (
    AuthFailed,
    BreakerTransitioned,
    Event,
    Publisher,
    RateLimitDecided,
    RequestFinished,
    subscribe,
)


def test_subscribe_reaches_existing_and_future_components() -> None:
    seen: list[Event] = []
    before = RateLimiter("1/minute", name="before")
    unsubscribe = subscribe(seen.append)
    try:
        after = RateLimiter("1/minute", name="after")
        before.sync.hit("k")
        after.sync.hit("k")
    finally:
        unsubscribe()
    before.sync.hit("k")
    assert [e.policy for e in seen if isinstance(e, RateLimitDecided)] == ["before", "after"]
    assert not before.events.listeners


def test_own_listeners_stay_after_a_global_one_leaves() -> None:
    own: list[Event] = []
    publisher = Publisher([own.append])
    unsubscribe = subscribe(lambda event: None)
    assert len(publisher.listeners) == 2
    unsubscribe()
    assert publisher.listeners == (own.append,)
    publisher.add(own.append)
    assert len(publisher.listeners) == 2
    assert bool(publisher)
    assert not Publisher()


@pytest.mark.parametrize(
    "event",
    [
        BreakerTransitioned("breaker:db", "db", "closed", "open"),
        AuthFailed("gateway", "jwt", "expired"),
        RequestFinished("http", "GET", "/api/v1/products/{id}", "r1", 200, 0.01),
    ],
)
def test_events_are_frozen_and_slotted(event: Event) -> None:
    assert not hasattr(event, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.component = "x"  # type: ignore[misc]


def _every_event_class() -> list[type[Event]]:
    import sysdesign_kit.events as module

    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Event)
    ]


@pytest.mark.parametrize("cls", _every_event_class(), ids=lambda cls: cls.__name__)
def test_every_event_builds_like_its_dataclass(cls: type[Event]) -> None:
    import inspect

    spec = dataclasses.fields(cls)  # type: ignore[arg-type]
    params = inspect.signature(cls).parameters
    assert list(params) == [field.name for field in spec]
    for field in spec:
        default = params[field.name].default
        assert default == (
            inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        )
    values = {field.name: f"value-{i}" for i, field in enumerate(spec)}
    by_name = cls(**values)
    by_position = cls(*values.values())
    assert by_name == by_position
    assert dataclasses.asdict(by_name) == values
    required = {f.name: values[f.name] for f in spec if f.default is dataclasses.MISSING}
    with_defaults = cls(**required)
    for field in spec:
        expected = values[field.name] if field.name in required else field.default
        assert getattr(with_defaults, field.name) == expected
    with pytest.raises(TypeError):
        cls(**values, unknown=1)  # type: ignore[call-arg]
