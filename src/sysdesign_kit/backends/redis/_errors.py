"""Driver failures, mapped once to `BackendUnavailable`."""

from __future__ import annotations

from typing import Final

import redis

from sysdesign_kit.errors import BackendUnavailable

__all__ = ["REDIS_ERRORS", "backend_error"]

#: What a call to redis-py can raise when the server is unreachable, slow or refuses.
#: (asyncio and builtin timeouts and connection resets are all OSError subclasses.)
REDIS_ERRORS: Final[tuple[type[Exception], ...]] = (redis.RedisError, OSError, EOFError)


def backend_error(exc: BaseException, operation: str, location: str = "") -> BackendUnavailable:
    """The `BackendUnavailable` to raise for a driver failure.

    Use as ``except REDIS_ERRORS as exc: raise backend_error(exc, "EVALSHA", where) from exc``
    so the driver's exception stays reachable as ``__cause__``.
    """
    where = f" at {location}" if location else ""
    return BackendUnavailable(f"redis {operation}{where} failed: {type(exc).__name__}: {exc}")
