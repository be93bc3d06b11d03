"""What counts as a failure: exception types or a predicate, ignored types, a result test.

An exception raised by the protected call is, in this order:

1. *never counted* (``CANCELLED``): ``asyncio.CancelledError``, ``KeyboardInterrupt``,
   ``SystemExit`` and ``GeneratorExit`` say the caller gave up, not that the dependency
   failed; the call counts as nothing and a half-open trial permit is given back;
2. *ignored* (``IGNORED``) when it is an instance of ``ignore``: counted as neither success
   nor failure (a trial permit is given back too);
3. a *failure* (``FAILURE``) when it is an instance of ``failure_on`` (default
   ``Exception``) or, if ``failure_on`` is a predicate, when the predicate says so;
4. otherwise a *success* (``SUCCESS``): the dependency answered, the answer was an error the
   caller expects (a 404 raised as an exception, a validation error...).

A call that returns is a success unless ``failure_if(result)`` is true. A predicate that
raises is logged and its call counted as a failure: a broken rule must not hide an outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sysdesign_kit.errors import ConfigurationError

__all__ = [
    "CANCELLED",
    "FAILURE",
    "IGNORED",
    "NEVER_COUNTED",
    "SUCCESS",
    "Classifier",
    "ExceptionTypes",
]

SUCCESS = 0
FAILURE = 1
IGNORED = 2
CANCELLED = 3

#: Exceptions that end a call without saying anything about the dependency.
NEVER_COUNTED: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)

#: One exception class or a tuple of them.
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]

_log = logging.getLogger("sysdesign_kit.breaker")


def _types(name: str, value: object) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(
                f"{name} must be an exception class or a tuple of them, got {item!r}"
            )
    return items


class Classifier:
    """Sorts finished calls into success, failure, ignored and never-counted.

    Args:
        failure_on: exception classes that count as failures, or a predicate given the
            exception that returns True for a failure.
        ignore: exception classes counted as neither success nor failure (checked first).
        failure_if: a predicate given a call's return value that returns True when that
            result is a failure (an HTTP 503 response, an empty answer...).

    Raises:
        ConfigurationError: a value of the wrong kind.
    """

    __slots__ = ("failure_if", "failure_on", "ignore", "predicate", "types")

    def __init__(
        self,
        failure_on: ExceptionTypes | Callable[[BaseException], bool] = Exception,
        ignore: ExceptionTypes = (),
        failure_if: Callable[[Any], bool] | None = None,
    ) -> None:
        self.failure_on = failure_on
        if isinstance(failure_on, type | tuple):
            self.types: tuple[type[BaseException], ...] | None = _types("failure_on", failure_on)
            self.predicate: Callable[[BaseException], bool] | None = None
        elif callable(failure_on):
            self.types = None
            self.predicate = failure_on
        else:
            raise ConfigurationError(
                f"failure_on must be exception classes or a predicate, got {failure_on!r}"
            )
        self.ignore = _types("ignore", ignore)
        if failure_if is not None and not callable(failure_if):
            raise ConfigurationError(
                f"failure_if must be a predicate on the result, got {failure_if!r}"
            )
        self.failure_if = failure_if

    def exception(self, error: BaseException) -> int:
        """``SUCCESS``, ``FAILURE``, ``IGNORED`` or ``CANCELLED`` for a raised exception."""
        if isinstance(error, NEVER_COUNTED):
            return CANCELLED
        if self.ignore and isinstance(error, self.ignore):
            return IGNORED
        if self.types is not None:
            return FAILURE if isinstance(error, self.types) else SUCCESS
        try:
            return FAILURE if self.predicate(error) else SUCCESS  # type: ignore[misc]
        except Exception:
            _log.exception("failure_on predicate %r raised; counting a failure", self.predicate)
            return FAILURE

    def result(self, value: object) -> bool:
        """Whether a returned value is a failure."""
        if self.failure_if is None:
            return False
        try:
            return bool(self.failure_if(value))
        except Exception:
            _log.exception("failure_if predicate %r raised; counting a failure", self.failure_if)
            return True
