"""Single-flight for threads: one caller loads a key, the others wait for its answer.

(The asyncio side needs no class: a `Cache` keeps one task per loading key and every caller
awaits it through ``asyncio.shield``, so a cancelled caller never cancels the load.)
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Call", "ThreadFlights"]


class Call:
    """One load in flight: waiters block on ``done`` and then read ``value`` or ``error``."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def wait(self) -> Any:
        """Block until the leader finishes; its value, or its exception raised here too."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class ThreadFlights:
    """The loads in flight, by key, for callers on any thread."""

    __slots__ = ("_calls", "_lock")

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._calls)

    def join(self, key: str) -> tuple[Call, bool]:
        """The call in flight for ``key`` and False, or a new one and True (you lead it)."""
        with self._lock:
            call = self._calls.get(key)
            if call is not None:
                return call, False
            call = self._calls[key] = Call()
            return call, True

    def busy(self, key: str) -> bool:
        """Whether a load of ``key`` is in flight."""
        return key in self._calls

    def finish(self, key: str, call: Call, value: Any, error: BaseException | None) -> None:
        """Publish the leader's answer and release every waiter."""
        call.value = value
        call.error = error
        with self._lock:
            if self._calls.get(key) is call:
                del self._calls[key]
        call.done.set()
