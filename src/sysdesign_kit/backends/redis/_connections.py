"""Blocking connections kept at hand for hot paths, without the pool's per-call overhead."""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

import redis
from redis.connection import AbstractConnection
from redis.exceptions import ResponseError

__all__ = ["Connections"]

# Every live `Connections`, so a forked child can drop what belongs to its parent.
_LIVE: weakref.WeakSet[Connections] = weakref.WeakSet()


def _forget_all() -> None:
    for connections in list(_LIVE):
        # The parent still uses these sockets: never close them here, only let go.
        connections.idle.clear()


os.register_at_fork(after_in_child=_forget_all)


class Connections:
    """Idle connections of a blocking client, taken and put back per command.

    redis-py's ``ConnectionPool.get_connection`` and ``release`` take a lock, record
    metrics and dispatch events on every call: on a fast network that is a sizeable part
    of a round trip. This keeps connections the pool made in a list of its own (``pop`` and
    ``append`` are atomic, so threads may share it) and does per call what matters of the
    pool's checks: connect if needed, and reconnect a connection that has data waiting or
    was closed by the server. Connections in use or idle here count against the pool's
    ``max_connections``; `close` gives the idle ones back.

    Args:
        client: the blocking client whose pool makes the connections.
        wait: seconds a caller waits for a connection given back here when the pool has
            made its ``max_connections`` (0: fail at once, as the pool does).
    """

    __slots__ = ("__weakref__", "freed", "idle", "pool", "wait", "waiting")

    def __init__(self, client: redis.Redis, *, wait: float = 0.0) -> None:
        self.pool = client.connection_pool
        self.idle: list[AbstractConnection] = []
        self.wait = wait
        #: Threads waiting for a connection (checked before notifying, so free otherwise).
        self.waiting = 0
        self.freed = threading.Condition(threading.Lock())
        _LIVE.add(self)

    def call(self, command: bytes) -> Any:
        """Send one packed command (see `pack`) and return its reply.

        Raises:
            ResponseError: the server answered with an error (the connection stays usable).
            redis.RedisError, OSError: the connection failed; it is closed.
        """
        try:
            conn = self.idle.pop()
        except IndexError:
            conn = self._new()  # checked by the pool
        else:
            try:
                # (connects first if it is not connected)
                if conn.can_read():
                    raise redis.ConnectionError("unexpected data on an idle connection")
            except (redis.ConnectionError, TimeoutError, OSError):
                # Closed by the server (restart, idle timeout) or out of step: start over.
                conn.disconnect()  # type: ignore[no-untyped-call]
                self._connect(conn)
        try:
            conn.send_packed_command([command], check_health=False)  # type: ignore[no-untyped-call]
            reply = conn.read_response()
        except ResponseError:
            self._give(conn)
            raise
        except BaseException:
            # It may be half way through a reply: never hand it out again as is.
            self._discard(conn)
            raise
        self._give(conn)
        return reply

    def _new(self) -> AbstractConnection:
        try:
            return self.pool.get_connection()
        except redis.ConnectionError as exc:
            if not self.wait or "Too many connections" not in str(exc):
                raise
        # Every connection is busy: wait for one to come back rather than fail.
        deadline = time.monotonic() + self.wait
        with self.freed:
            self.waiting += 1
            try:
                while not self.idle:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise redis.ConnectionError(
                            f"all connections busy for {self.wait} s"
                        ) from None
                    self.freed.wait(left)
                    if not self.idle:
                        try:  # a discarded connection's place
                            return self.pool.get_connection()
                        except redis.ConnectionError:
                            continue
                return self.idle.pop()
            finally:
                self.waiting -= 1

    def _give(self, conn: AbstractConnection) -> None:
        self.idle.append(conn)
        if self.waiting:
            with self.freed:
                self.freed.notify()

    def _connect(self, conn: AbstractConnection) -> None:
        try:
            conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self._discard(conn)
            raise

    def _discard(self, conn: AbstractConnection) -> None:
        conn.disconnect()  # type: ignore[no-untyped-call]
        self.pool.release(conn)  # type: ignore[arg-type]
        if self.waiting:
            with self.freed:
                self.freed.notify()

    def close(self) -> None:
        """Give the idle connections back to the pool (which closes them with the client)."""
        while self.idle:
            self.pool.release(self.idle.pop())  # type: ignore[arg-type]
