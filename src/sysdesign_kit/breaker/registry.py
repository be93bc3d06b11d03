"""Named breakers: one `CircuitBreaker` per dependency, found by name.

``registry.get("payments")`` returns the breaker named ``payments``, creating it on first use
with the registry's defaults and the settings given; ``get_breaker(name, **settings)`` does
the same on the process's default registry. Operators list every breaker with its state
(``registry.states()``, ``registry.stats()``) and can reset them all.

``BreakerRegistry(shared=RedisBreakerState.from_url(url))`` makes every breaker it creates
share its state through Redis with the breakers of the same name in other processes.

Asking again for an existing breaker with different settings raises `ConfigurationError`
instead of silently handing back a breaker configured otherwise. Settings that are functions
(``failure_on`` predicates, ``failure_if``, ``listeners``) are not compared: a lambda written
at the call site is a new object on every call.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from sysdesign_kit.breaker.breaker import BreakerStats, CircuitBreaker
from sysdesign_kit.breaker.state import State
from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import Listener

__all__ = ["BreakerRegistry", "default_registry", "get_breaker"]

_NOT_COMPARED = frozenset({"failure_if", "listeners", "clock"})
#: Every keyword setting of a CircuitBreaker and its default.
_SETTINGS = {
    p.name: p.default
    for p in inspect.signature(CircuitBreaker.__init__).parameters.values()
    if p.kind is p.KEYWORD_ONLY
}


class BreakerRegistry:
    """Breakers by name, created on first use.

    Args:
        clock: the clock of the breakers this registry creates.
        listeners: listeners attached to every breaker this registry creates.
        **defaults: `CircuitBreaker` settings for the breakers it creates (overridden by
            the settings given to `get`).

    Raises:
        ConfigurationError: a default is not a `CircuitBreaker` setting.
    """

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
        **defaults: Any,
    ) -> None:
        if "name" in defaults:
            raise ConfigurationError("a registry's defaults cannot include a breaker name")
        self.clock = clock
        self.listeners = tuple(listeners)
        self.defaults = defaults
        self._breakers: dict[str, CircuitBreaker] = {}
        self._settings: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # creation only; lookups read the dict without it
        if defaults:
            # Fail at construction, not at the first lookup.
            CircuitBreaker("defaults-check", clock=clock, **defaults)

    def get(self, name: str, **settings: Any) -> CircuitBreaker:
        """The breaker called ``name``, created with the registry's defaults and
        ``settings`` on first use.

        Raises:
            ConfigurationError: bad settings, or settings that differ from those the
                existing breaker was created with.
        """
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    merged = {**self.defaults, **settings}
                    merged.setdefault("clock", self.clock)
                    listeners = (*self.listeners, *merged.pop("listeners", ()))
                    breaker = CircuitBreaker(name, listeners=listeners, **merged)
                    self._settings[name] = merged
                    self._breakers[name] = breaker
                    return breaker
        if settings:
            self._check_same(name, settings)
        return breaker

    def _check_same(self, name: str, settings: dict[str, Any]) -> None:
        known = self._settings.get(name)
        if known is None:
            raise ConfigurationError(
                f"breaker {name!r} was added ready-made; look it up without settings"
            )
        for key, value in settings.items():
            if key not in _SETTINGS:
                raise ConfigurationError(f"{key!r} is not a CircuitBreaker setting")
            if key in _NOT_COMPARED or (callable(value) and not isinstance(value, type)):
                continue
            current = known.get(key, _SETTINGS[key])
            if current != value:
                raise ConfigurationError(
                    f"breaker {name!r} already exists with {key}={current!r}, not {value!r}"
                )

    def add(self, breaker: CircuitBreaker) -> CircuitBreaker:
        """Register a breaker built elsewhere under its own name.

        Raises:
            ConfigurationError: another breaker already has that name.
        """
        with self._lock:
            existing = self._breakers.get(breaker.name)
            if existing is not None and existing is not breaker:
                raise ConfigurationError(f"a breaker named {breaker.name!r} already exists")
            self._breakers[breaker.name] = breaker
        return breaker

    def remove(self, name: str) -> CircuitBreaker | None:
        """Forget the breaker called ``name`` (returned, or None if there was none)."""
        with self._lock:
            self._settings.pop(name, None)
            return self._breakers.pop(name, None)

    def __getitem__(self, name: str) -> CircuitBreaker:
        return self._breakers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def names(self) -> list[str]:
        """The breakers' names, sorted."""
        return sorted(self._breakers)

    def states(self) -> dict[str, State]:
        """Each breaker's state, by name (sorted)."""
        return {name: self._breakers[name].state for name in self.names()}

    def stats(self) -> list[BreakerStats]:
        """A snapshot of every breaker, sorted by name (for dashboards)."""
        return [self._breakers[name].stats() for name in self.names()]

    def reset_all(self) -> None:
        """Reset every breaker to a fresh CLOSED state."""
        for breaker in self:
            breaker.reset()


_default = BreakerRegistry()


def default_registry() -> BreakerRegistry:
    """The process's registry, used by `get_breaker`."""
    return _default


def get_breaker(name: str, **settings: Any) -> CircuitBreaker:
    """``default_registry().get(name, **settings)``: the process's breaker for ``name``."""
    return _default.get(name, **settings)
