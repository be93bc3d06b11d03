"""Blocking probe calls (DB-API, statvfs, sync callables) run in a thread of their own.

Not ``asyncio.to_thread``: a probe that hangs (a database connect with no timeout) would
hold a worker of the loop's default executor for good, a new one every interval, starving
the application's own ``to_thread`` calls, and interpreter exit would wait for it. Here each
check owns at most one daemon thread at a time; while it is still stuck, the next probe fails
at once instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["StillRunning", "Worker"]

T = TypeVar("T")


class StillRunning(RuntimeError):
    """The previous blocking call of this check has not returned yet."""


class Worker:
    """Runs one blocking call at a time for one check, in a daemon thread.

    Args:
        name: used in the thread's name, to tell hung probes apart in a thread dump.
    """

    __slots__ = ("_busy", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._busy = False

    @property
    def busy(self) -> bool:
        """Whether a call is still running (possibly long after its caller gave up)."""
        return self._busy

    async def run(self, function: Callable[[], T]) -> T:
        """Call ``function()`` in a thread and return (or raise) what it did.

        Cancelling the caller does not stop the thread; it only stops waiting for it.

        Raises:
            StillRunning: the previous call has not returned yet.
        """
        if self._busy:
            raise StillRunning("the previous probe has not returned yet (hung in a thread)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(value: T | None, error: Exception | None) -> None:
            if future.done():  # the caller gave up (timeout, shutdown)
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)  # type: ignore[arg-type]

        def work() -> None:
            value: T | None = None
            error: Exception | None = None
            try:
                value = function()
            except Exception as exc:
                error = exc
            finally:
                self._busy = False
            # The loop may have closed while the call hung: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, value, error)

        self._busy = True
        thread = threading.Thread(target=work, name=f"health-{self._name}", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self._busy = False
            raise
        return await future
