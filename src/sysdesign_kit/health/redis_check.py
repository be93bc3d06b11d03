"""Redis check: a ``PING`` round trip (needs the ``redis`` extra).

URLs, clients and error mapping are the shared plumbing of `sysdesign_kit.backends.redis`,
so the check connects exactly as the rate limiter does (same URL options, same short
timeouts) and reports the same `BackendUnavailable` messages, without credentials.
"""

from __future__ import annotations

import time
from typing import Unpack

import redis.asyncio

from sysdesign_kit.backends.redis import REDIS_ERRORS, async_client, backend_error, parse_redis_url
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.health.checks import Check, CheckOptions
from sysdesign_kit.health.reading import Observation

__all__ = ["RedisCheck"]


class RedisCheck(Check):
    """Does Redis answer ``PING``, and how fast (``observedValue`` in ms)?

    Args:
        url: a ``redis://``, ``rediss://`` or ``unix://`` URL (see
            `sysdesign_kit.backends.redis.parse_redis_url` for its options).
        client: or an existing ``redis.asyncio.Redis`` to ping (not closed by the check).
        name: the check's name (``redis`` by default).
        **options: see `Check`.

    Raises:
        ConfigurationError: neither or both of ``url`` and ``client``, or a bad URL.
    """

    dependency = True
    default_measurement = "responseTime"
    default_component_type = "datastore"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.asyncio.Redis | None = None,
        name: str = "redis",
        **options: Unpack[CheckOptions],
    ) -> None:
        super().__init__(name, **options)
        if (url is None) == (client is None):
            raise ConfigurationError(f"check {name!r}: give exactly one of url= or client=")
        if url is not None:
            settings = parse_redis_url(url)
            self.location = settings.location
            self._client = async_client(settings)
            self._owns_client = True
        else:
            assert client is not None
            kwargs = client.connection_pool.connection_kwargs
            self.location = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            self._client = client
            self._owns_client = False

    async def probe(self) -> Observation:
        """Send ``PING`` and time the reply."""
        started = time.perf_counter()
        try:
            await self._client.ping()
        except REDIS_ERRORS as exc:
            raise backend_error(exc, "PING", self.location) from exc
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return Observation("pass", elapsed, "ms")

    async def aclose(self) -> None:
        """Close the client the check made itself."""
        if self._owns_client:
            await self._client.aclose()
