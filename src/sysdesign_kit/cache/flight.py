"""Single-flight: one caller loads a key, the others wait for its answer.

`AsyncFlight` is one load running as a task of its own, with a future per waiting caller:
when the load ends, one callback settles every waiter (one event-loop step each, where
``asyncio.shield`` per caller would take two). A waiter that is cancelled cancels only its
own future, never the load. `ThreadFlights` does the same for threads with an event.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

__all__ = ["AsyncFlight", "Call", "ThreadFlights"]


class AsyncFlight:
    """One load in flight on an event loop, and the futures of the callers waiting for it."""

    __slots__ = ("loop", "refresh", "task", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, refresh: bool = False) -> None:
        self.loop = loop
        #: A background reload (callers are served the old value, not made to wait for it).
        self.refresh = refresh
        self.waiters: list[asyncio.Future[Any]] = []
        self.task: asyncio.Task[Any]

    def start(self, load: Coroutine[Any, Any, Any]) -> None:
        """Run ``load`` as a task; its outcome goes to every waiter."""
        self.task = self.loop.create_task(load)
        self.task.add_done_callback(self._settle)

    def _settle(self, task: asyncio.Task[Any]) -> None:
        waiters, self.waiters = self.waiters, []
        if task.cancelled():
            for waiter in waiters:
                waiter.cancel()
            return
        error = task.exception()  # also marks a background failure as retrieved
        for waiter in waiters:
            if waiter.done():  # its caller was cancelled
                continue
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(task.result())


class Call:
    """One load in flight: waiters block on ``done`` and then read ``value`` or ``error``."""

    __slots__ = ("done", "error", "refresh", "value")

    def __init__(self, refresh: bool = False) -> None:
        self.done = threading.Event()
        #: A background reload (see `AsyncFlight.refresh`).
        self.refresh = refresh
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

    def join(self, key: str, refresh: bool = False) -> tuple[Call, bool]:
        """The call in flight for ``key`` and False, or a new one and True (you lead it;
        ``refresh`` marks it a background reload)."""
        with self._lock:
            call = self._calls.get(key)
            if call is not None:
                return call, False
            call = self._calls[key] = Call(refresh)
            return call, True

    def loading(self, key: str) -> Call | None:
        """The load of ``key`` in flight that is not a background reload, if any."""
        call = self._calls.get(key)
        return call if call is not None and not call.refresh else None

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
