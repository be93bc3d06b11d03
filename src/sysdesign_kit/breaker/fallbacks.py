"""Fallbacks: what a protected function answers when its breaker is open or the call failed.

Given as ``@breaker(fallback=...)``:

- `Default` (or any plain value): always that value;
- `FromError` (or any other callable): ``fn(error)``, given the exception;
- `Degrade`: ``fn(*args, **kwargs)``, given the call's own arguments, returning a degraded
  answer (generic recommendations instead of personal ones, a price without the discount);
- `LastGood`: the last good result for the same arguments, remembered on every success; it
  keeps them in any mutable mapping (``store=``), which is where a cache plugs in, and falls
  through to ``otherwise`` (or re-raises) when it has nothing.

A fallback answers `CircuitOpen` and the exceptions the breaker counted as failures;
exceptions counted as successes, ignored ones and cancellation propagate unchanged, and a
returned value that ``failure_if`` marks as failed is still returned. For async functions a
fallback may return an awaitable; it is awaited.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, ClassVar, Generic, TypeVar

from sysdesign_kit.errors import ConfigurationError

__all__ = [
    "Default",
    "Degrade",
    "Fallback",
    "FallbackArg",
    "FromError",
    "LastGood",
    "as_fallback",
]

T = TypeVar("T")


class Fallback(Generic[T]):
    """Base of every fallback: ``fallback(error, args, kwargs)`` returns the answer."""

    #: Whether the wrapper must call `remember` with every good result.
    remembers: ClassVar[bool] = False

    def __call__(self, error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """The answer for a call that raised ``error`` (or was refused) with these arguments."""
        raise NotImplementedError

    def remember(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        """Told about every successful call (only when `remembers` is true)."""


#: What ``fallback=`` accepts: a `Fallback`, a callable given the exception, or a value.
FallbackArg = Fallback[Any] | Callable[[BaseException], Any] | object


class Default(Fallback[T]):
    """Always answer ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __call__(self, error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """``value``."""
        return self.value

    def __repr__(self) -> str:
        return f"Default({self.value!r})"


class FromError(Fallback[T]):
    """Answer ``fn(error)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[BaseException], T]) -> None:
        if not callable(fn):
            raise ConfigurationError(f"FromError needs a callable, got {fn!r}")
        self.fn = fn

    def __call__(self, error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """``fn(error)``."""
        return self.fn(error)


class Degrade(Fallback[T]):
    """Answer ``fn(*args, **kwargs)``: a degraded version computed from the same arguments."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., T]) -> None:
        if not callable(fn):
            raise ConfigurationError(f"Degrade needs a callable, got {fn!r}")
        self.fn = fn

    def __call__(self, error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """``fn(*args, **kwargs)``."""
        return self.fn(*args, **kwargs)


class LastGood(Fallback[Any]):
    """Answer with the last good result of a call with the same arguments.

    Args:
        store: where results are kept: any mutable mapping from key to result. The default
            is an in-process mapping holding the ``max_entries`` most recent keys; pass a
            cache's mapping view to share last good values between processes.
        key: a function given the call's arguments that returns the key (default: the
            positional arguments and the sorted keyword arguments; calls whose arguments are
            unhashable are neither remembered nor answered).
        max_entries: size of the default store.
        otherwise: the fallback to use when there is no remembered value (default: raise
            the original error).

    Raises:
        ConfigurationError: ``max_entries`` below 1, or ``key`` not callable.
    """

    remembers: ClassVar[bool] = True

    def __init__(
        self,
        *,
        store: MutableMapping[Hashable, Any] | None = None,
        key: Callable[..., Hashable] | None = None,
        max_entries: int = 1024,
        otherwise: FallbackArg | None = None,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(f"max_entries must be an int >= 1, got {max_entries!r}")
        if key is not None and not callable(key):
            raise ConfigurationError(f"key must be a callable, got {key!r}")
        self.store: MutableMapping[Hashable, Any] = (
            store if store is not None else _Recent(max_entries)
        )
        self.key = key
        self.otherwise = as_fallback(otherwise) if otherwise is not None else None

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable | None:
        try:
            if self.key is not None:
                return self.key(*args, **kwargs)
            key = (args, tuple(sorted(kwargs.items()))) if kwargs else args
            hash(key)
        except TypeError:
            return None
        return key

    def remember(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        """Keep ``result`` as the last good answer for these arguments."""
        key = self._key(args, kwargs)
        if key is not None:
            self.store[key] = result

    def __call__(self, error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The remembered result, else ``otherwise``, else ``error`` is raised again."""
        key = self._key(args, kwargs)
        if key is not None:
            try:
                return self.store[key]
            except KeyError:
                pass
        if self.otherwise is not None:
            return self.otherwise(error, args, kwargs)
        raise error


def as_fallback(value: FallbackArg) -> Fallback[Any]:
    """What ``fallback=`` means: a `Fallback` as is, a callable as `FromError`, anything
    else as `Default` (wrap a callable you want returned as a value in `Default`)."""
    if isinstance(value, Fallback):
        return value
    if callable(value):
        return FromError(value)
    return Default(value)


class _Recent(OrderedDict[Hashable, Any]):
    """A mapping that keeps only the most recently written ``limit`` keys."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Hashable, value: Any) -> None:
        super().__setitem__(key, value)
        # Each step is one C call; another thread may have evicted the key or emptied the
        # mapping in between, which only costs a remembered value.
        try:
            self.move_to_end(key)
            while len(self) > self.limit:
                self.popitem(last=False)
        except KeyError:  # pragma: no cover - a race with another writer
            pass
