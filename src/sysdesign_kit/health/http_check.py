"""HTTP dependency check: a GET with a timeout; 2xx and 3xx pass (needs the ``http`` extra).

httpx is imported when the first probe runs, so importing this module (and
``sysdesign_kit.health``) does not require it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Unpack
from urllib.parse import urlsplit

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.health.checks import Check, CheckOptions
from sysdesign_kit.health.reading import Observation

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpCheck"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class HttpCheck(Check):
    """Does an HTTP dependency answer, and how fast (``observedValue`` in ms)?

    One request per reading (``GET`` by default), redirects not followed: any 2xx or 3xx
    status passes, anything else (or no answer within ``timeout``) fails. The body is never
    read.

    Args:
        url: the dependency's health URL (``http://`` or ``https://``).
        name: the check's name; by default the URL's host (``api.example.com``).
        method: the request method.
        headers: extra request headers (an API key for the dependency, say); never shown.
        client: an ``httpx.AsyncClient`` to send with (your transport, proxies, TLS
            settings); by default the check makes its own and closes it in ``aclose``.
        **options: see `Check`.
    """

    dependency = True
    default_measurement = "responseTime"
    default_component_type = "component"

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        **options: Unpack[CheckOptions],
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"HttpCheck: {url!r} is not an http(s) URL with a host")
        default_name = _UNSAFE.sub("-", parts.hostname).strip("-._")[:64] or "http"
        super().__init__(name or default_name, **options)
        if not isinstance(method, str) or not method.isalpha():
            raise ConfigurationError(f"check {self.name!r}: method {method!r} is not a method")
        self.url = url
        self.method = method.upper()
        self.headers = dict(headers or {})
        self._client = client
        self._owns_client = client is None

    async def probe(self) -> Observation:
        """Send the request and judge the status code."""
        client = self._client
        if client is None:
            import httpx

            client = self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        started = time.perf_counter()
        async with client.stream(self.method, self.url, headers=self.headers) as response:
            status = response.status_code
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        if 200 <= status < 400:
            return Observation("pass", elapsed, "ms")
        return Observation("fail", elapsed, "ms", f"HTTP {status} {response.reason_phrase}")

    async def aclose(self) -> None:
        """Close the client the check made itself."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
