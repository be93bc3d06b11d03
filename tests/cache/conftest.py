"""Fixtures for the cache tests: a manual clock, a cache on it, and an event recorder."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sysdesign_kit.cache import Cache, MemoryBackend
from sysdesign_kit.clock import ManualClock
from sysdesign_kit.events import CacheAccessed, CacheLoaded, Event


class Recorder:
    """Collects events; ``accessed`` and ``loaded`` list their outcomes in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def accessed(self) -> list[str]:
        return [e.outcome for e in self.events if isinstance(e, CacheAccessed)]

    @property
    def loaded(self) -> list[str]:
        return [e.outcome for e in self.events if isinstance(e, CacheLoaded)]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_cache(clock: ManualClock, recorder: Recorder | None = None, **options: Any) -> Cache:
    """A cache on ``clock`` (memory backend on the same clock), seeded RNG, no early refresh
    unless asked."""
    options.setdefault("early_refresh_beta", 0.0)
    options.setdefault("backend", MemoryBackend(clock=clock))
    return Cache(
        options.pop("name", "test"),
        clock=clock,
        rng=random.Random(7),
        listeners=[recorder] if recorder is not None else (),
        **options,
    )
