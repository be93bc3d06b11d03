"""Drain on a signal, then pass the signal on to the server after a delay.

Servers such as uvicorn stop accepting connections as soon as they see SIGTERM, before any
lifespan shutdown runs, so a readiness flag flipped in the lifespan comes too late for load
balancers. `SignalDrain` takes the signal first: it drains at once, waits ``delay``
seconds on the injected clock (the balancers see ``/ready`` fail meanwhile), then restores
the previous handler and calls it, so the server shuts down as it would have.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from sysdesign_kit.clock import Clock

__all__ = ["SignalDrain"]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
_log = logging.getLogger("sysdesign_kit.health")


class SignalDrain:
    """Signal handlers that drain, wait, and hand the signal back.

    Args:
        drain: called as soon as a signal arrives.
        signals: the signals to take (``SIGTERM``, usually).
        delay: seconds between draining and passing the signal on.
        clock: what ``delay`` is measured on.
    """

    def __init__(
        self, drain: Callable[[], None], signals: Iterable[int], delay: float, clock: Clock
    ) -> None:
        self.drain = drain
        self.signals = tuple(signal.Signals(number) for number in signals)
        self.delay = delay
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, _Handler] = {}
        self._pending: set[int] = set()
        self._forwards: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        """Take the signals (main thread only; elsewhere a warning is logged)."""
        if not self.signals:
            return
        if threading.current_thread() is not threading.main_thread():
            _log.warning("health: drain_signals ignored: signals need the main thread")
            return
        self._loop = asyncio.get_running_loop()
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    async def uninstall(self) -> None:
        """Give the signals back and drop any signal still waiting to be passed on."""
        for signum, previous in self._previous.items():
            signal.signal(signum, _restorable(previous))
        self._previous.clear()
        self._pending.clear()
        forwards = list(self._forwards)
        for task in forwards:
            task.cancel()
        await asyncio.gather(*forwards, return_exceptions=True)
        self._loop = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread, possibly inside the loop's own
        # code: set the flag, and leave the rest to the loop.
        self.drain()
        loop = self._loop
        if loop is None or not self.delay or signum in self._pending:
            # No delay asked, or a second signal while waiting: the operator insists.
            self._forward(signum)
            return
        self._pending.add(signum)
        loop.call_soon_threadsafe(self._forward_later, signum)

    def _forward_later(self, signum: int) -> None:
        async def later() -> None:
            await self.clock.sleep(self.delay)
            self._forward(signum)

        task = asyncio.ensure_future(later())
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)

    def _forward(self, signum: int) -> None:
        """Give ``signum`` to the handler that was there before, and restore that one."""
        self._pending.discard(signum)
        if signum not in self._previous:
            return
        previous = self._previous.pop(signum)
        signal.signal(signum, _restorable(previous))
        if callable(previous):
            previous(signum, None)
        elif previous in (signal.SIG_DFL, None):
            signal.raise_signal(signum)


def _restorable(handler: _Handler) -> Callable[[int, FrameType | None], Any] | int:
    # None means the handler was not installed from Python; the default is the best guess.
    return signal.SIG_DFL if handler is None else handler
