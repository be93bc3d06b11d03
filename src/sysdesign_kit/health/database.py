"""Database check: any async callable, or a DB-API 2 connect factory and ``SELECT 1``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, Unpack

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.health._threads import Worker
from sysdesign_kit.health.checks import Check, CheckOptions
from sysdesign_kit.health.reading import Observation

__all__ = ["DBAPIConnection", "DatabaseCheck"]


class _Cursor(Protocol):
    def execute(self, operation: str, /) -> object: ...

    def fetchone(self) -> object: ...

    def close(self) -> object: ...


class DBAPIConnection(Protocol):
    """What the check needs of a PEP 249 connection."""

    def cursor(self) -> _Cursor:
        """A new cursor."""
        ...

    def close(self) -> object:
        """Close the connection."""
        ...


class DatabaseCheck(Check):
    """Can the database answer a query, and how fast (``observedValue`` in ms)?

    Two ways, no ORM needed:

    - ``ping``: an async callable that queries through your own pool, e.g.
      ``lambda: pool.fetchval("SELECT 1")`` (asyncpg) or a SQLAlchemy ``AsyncEngine``
      connection; it runs on the event loop.
    - ``connect``: a DB-API 2 connect factory such as
      ``lambda: sqlite3.connect("app.db")`` or ``functools.partial(psycopg.connect, dsn)``;
      each reading opens a connection, runs ``query``, fetches one row and closes it, in a
      thread of its own (a hung connect cannot stall the loop).

    Args:
        name: the check's name (``database`` by default).
        ping: async callable to await (its result is ignored; raising is a fail).
        connect: DB-API connect factory.
        query: the statement the ``connect`` way runs.
        **options: see `Check`.

    Raises:
        ConfigurationError: neither or both of ``ping`` and ``connect``.
    """

    dependency = True
    default_measurement = "responseTime"
    default_component_type = "datastore"

    def __init__(
        self,
        *,
        name: str = "database",
        ping: Callable[[], Awaitable[object]] | None = None,
        connect: Callable[[], DBAPIConnection] | None = None,
        query: str = "SELECT 1",
        **options: Unpack[CheckOptions],
    ) -> None:
        super().__init__(name, **options)
        if (ping is None) == (connect is None):
            raise ConfigurationError(
                f"check {name!r}: give exactly one of ping= (an async callable) or "
                "connect= (a DB-API connect factory)"
            )
        for label, function in (("ping", ping), ("connect", connect)):
            if function is not None and not callable(function):
                raise ConfigurationError(f"check {name!r}: {label} must be callable")
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError(f"check {name!r}: query must be a non-empty SQL string")
        self.ping = ping
        self.connect = connect
        self.query = query
        self._worker = Worker(name)

    async def probe(self) -> Observation:
        """Run the ping (or the query) once and time it."""
        started = time.perf_counter()
        if self.ping is not None:
            await self.ping()
        else:
            await self._worker.run(self._select)
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return Observation("pass", elapsed, "ms")

    def _select(self) -> None:
        assert self.connect is not None
        connection = self.connect()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self.query)
                cursor.fetchone()
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()
        finally:
            with contextlib.suppress(Exception):
                connection.close()
