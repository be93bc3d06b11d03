"""One pipelined asyncio connection to Redis, for the rate limiter's hot path.

redis-py's ``execute_command`` pays, per call, a pool checkout under a lock, metrics hooks
and a task for ``wait_for`` on every write: on a fast network that is most of a round trip.
A `Wire` keeps one connection (made by redis-py, so TLS, unix sockets, AUTH and SELECT
behave as everywhere else) and uses only its public ``send_packed_command`` and
``read_response``:

- a caller writes its command at once and waits on a future; commands from concurrent
  callers follow each other on the wire without waiting for replies (pipelining);
- one reader task reads replies in order and resolves the futures; a caller that is
  cancelled only drops its future, the reply is still read, so the connection stays in step;
- one timer (not one per call) fails everything outstanding once the oldest request has
  waited ``timeout`` seconds, closes the connection, and the next call opens a new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from sysdesign_kit.backends.redis import REDIS_ERRORS, backend_error
from sysdesign_kit.errors import BackendUnavailable

__all__ = ["Wire"]


class Wire:
    """A pipelined connection bound to the running event loop.

    Args:
        make: returns a new, unconnected redis-py asyncio connection whose read timeout is
            None (the wire enforces ``timeout`` itself).
        timeout: seconds the oldest outstanding request may wait for its reply.
        connect_timeout: seconds to connect, TLS and AUTH included.
        location: the server, for error messages.
    """

    __slots__ = (
        "_closed",
        "_conn",
        "_connect_timeout",
        "_connecting",
        "_make",
        "_reader",
        "_timeout",
        "_timer",
        "_waiters",
        "location",
        "loop",
    )

    def __init__(
        self,
        make: Callable[[], AbstractConnection],
        *,
        timeout: float,
        connect_timeout: float,
        location: str,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.location = location
        self._make = make
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._conn: AbstractConnection | None = None
        self._connecting: asyncio.Task[AbstractConnection] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._closed = False

    async def call(self, command: bytes) -> Any:
        """Send one packed command and return its reply.

        Raises:
            ResponseError: the server answered with an error (e.g. NOSCRIPT).
            BackendUnavailable: no connection, a broken one, or no reply in time.
        """
        conn = self._conn
        if conn is None or not conn.is_connected:
            if conn is not None:
                # Closed under us (the reader is still unwinding): never let redis-py
                # reconnect it quietly, with replies from before still expected.
                self._fail(conn, ConnectionError("connection lost"))
            conn = await self._connect()
        loop = self.loop
        future = loop.create_future()
        now = loop.time()
        self._waiters.append((future, now))
        if self._timer is None:
            self._timer = loop.call_at(now + self._timeout, self._watch)
        try:
            await conn.send_packed_command(command, check_health=False)
        except BaseException as exc:
            # redis-py closed the connection: every reply still expected is lost.
            future.cancel()
            self._fail(conn, exc)
            if isinstance(exc, REDIS_ERRORS):
                raise backend_error(exc, "write", self.location) from exc
            raise
        return await future

    async def _connect(self) -> AbstractConnection:
        if self._closed:
            raise BackendUnavailable(f"redis at {self.location}: the backend was closed")
        if self._connecting is None:
            self._connecting = self.loop.create_task(self._open())
            self._connecting.add_done_callback(_retrieve)
        # Shielded: one caller giving up must not abort the connect the others wait for.
        try:
            return await asyncio.shield(self._connecting)
        except BackendUnavailable as exc:
            # Each caller raises its own instance: tracebacks must not pile up on one.
            raise BackendUnavailable(*exc.args) from exc.__cause__

    async def _open(self) -> AbstractConnection:
        conn = self._make()
        try:
            # Bounds the handshake too (AUTH, SELECT...), which reads with no timeout.
            async with asyncio.timeout(self._connect_timeout):
                await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            await conn.disconnect(nowait=True)
            if isinstance(exc, REDIS_ERRORS):
                raise backend_error(exc, "connect", self.location) from exc
            raise
        finally:
            self._connecting = None
        if self._closed:
            await conn.disconnect(nowait=True)
            raise BackendUnavailable(f"redis at {self.location}: the backend was closed")
        self._conn = conn
        self._reader = self.loop.create_task(self._read(conn))
        return conn

    async def _read(self, conn: AbstractConnection) -> None:
        waiters = self._waiters
        try:
            while True:
                try:
                    reply: Any = await conn.read_response()
                    error = None
                except ResponseError as exc:
                    reply, error = None, exc
                if not waiters:
                    raise ResponseError("a reply arrived that nothing asked for")
                future = waiters.popleft()[0]
                if not future.done():
                    if error is None:
                        future.set_result(reply)
                    else:
                        future.set_exception(error)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(conn, exc)
        finally:
            await conn.disconnect(nowait=True)

    def _watch(self) -> None:
        self._timer = None
        if not self._waiters:
            return
        oldest = self._waiters[0][1]
        if self.loop.time() - oldest >= self._timeout:
            self._fail(self._conn, TimeoutError(f"no reply within {self._timeout} s"))
        else:
            self._timer = self.loop.call_at(oldest + self._timeout, self._watch)

    def _fail(self, conn: AbstractConnection | None, exc: BaseException) -> None:
        """Give up on ``conn``: fail everything outstanding on it; the next call reconnects."""
        if conn is not self._conn:
            return  # already failed over
        self._conn = None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()  # its finally closes the connection
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters, self._waiters = self._waiters, deque()
        cause = exc if isinstance(exc, REDIS_ERRORS) else ConnectionError(repr(exc))
        for future, _ in waiters:
            if not future.done():
                error = backend_error(cause, "read", self.location)
                error.__cause__ = cause
                future.set_exception(error)

    async def aclose(self) -> None:
        """Fail what is outstanding, close the connection, end the reader task."""
        self._closed = True
        reader, connecting = self._reader, self._connecting
        self._fail(self._conn, ConnectionError("the backend was closed"))
        pending = [task for task in (reader, connecting) if task is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A connect that every waiter gave up on must not log "exception never retrieved".
    if not task.cancelled():
        task.exception()
