"""Instant retries for users' test suites: every wait becomes zero, process-wide.

::

    from sysdesign_kit.retry import testing

    def test_gives_up_after_three_tries():
        with testing.instant(attempts=3):
            ...  # every Retry in the process retries at once, at most 3 attempts a call

or, for a whole session (``conftest.py``): ``testing.set_testing(True)``.

Backoff and server-given delays become zero (an async retry still yields to the event loop
once), and ``attempts`` (when given) caps every policy's attempts. Deadlines, budgets,
predicates and events behave as usual. Enabling and disabling is safe from any thread or
task: each ``instant()`` block and the ``set_testing`` switch are separate holders, and the
mode is on while any of them is; the attempts cap is the smallest one any holder asked for.
The retry loop reads one module attribute, and only after a failure.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sysdesign_kit.retry._config import check_int

__all__ = ["instant", "is_testing", "set_testing"]

#: (on, attempts cap): replaced whole, so a reader never sees half an update.
state: tuple[bool, int | None] = (False, None)

_lock = threading.Lock()
_holders: dict[object, int | None] = {}
_SWITCH = object()  # the holder that set_testing() adds and removes


def _refresh() -> None:
    global state
    caps = [cap for cap in _holders.values() if cap is not None]
    state = (bool(_holders), min(caps) if caps else None)


def _check(attempts: int | None) -> int | None:
    if attempts is None:
        return None
    return check_int("attempts", attempts, minimum=1, why="a call is always tried once")


@contextmanager
def instant(*, attempts: int | None = None) -> Iterator[None]:
    """Make every retry wait zero seconds inside the block.

    Args:
        attempts: if given, no call is tried more than this many times (first try included).

    Raises:
        ConfigurationError: ``attempts`` below 1.
    """
    cap = _check(attempts)
    holder = object()
    with _lock:
        _holders[holder] = cap
        _refresh()
    try:
        yield
    finally:
        with _lock:
            del _holders[holder]
            _refresh()


def set_testing(on: bool, *, attempts: int | None = None) -> None:
    """Switch instant retries on or off for the process (like ``stamina.set_testing``).

    Args:
        on: True to make every wait zero until ``set_testing(False)``.
        attempts: with ``on``, the most times any call is tried.

    Raises:
        ConfigurationError: ``attempts`` below 1.
    """
    cap = _check(attempts)
    with _lock:
        if on:
            _holders[_SWITCH] = cap
        else:
            _holders.pop(_SWITCH, None)
        _refresh()


def is_testing() -> bool:
    """Whether retries are instant right now."""
    return state[0]
