"""`JWKSKeys`: a `KeySource` over JWKS endpoints, one per issuer, cached and refreshed.

::

    keys = JWKSKeys({"https://idp.example": "https://idp.example/.well-known/jwks.json"})
    await keys.start()          # first fetch, then refresh in the background
    key = keys.get(kid, issuer) # from memory, no I/O
    key = await keys.fetch(kid, issuer)  # an unknown kid may refetch (rate-limited)
    await keys.aclose()

What it promises:

- **Answers from memory.** `get` reads a dict; only `fetch` and the background task do I/O.
- **Refreshes in the background**, every ``refresh_interval`` (5 min), or what the
  response's ``Cache-Control: max-age`` says, held between ``min_refresh`` and
  ``max_refresh``. Without `start`, the first `fetch` loads the set and later ones refresh
  it in the background when due.
- **Serves stale keys when the endpoint fails.** A failed fetch (connection error, timeout,
  non-200 status, a body over ``max_bytes``, not a JWK Set, not one usable key) keeps the
  last good set, publishes `BackendFailure` (component ``jwks:<issuer>``, outcome
  ``serve_stale``, or ``fail_closed`` when there is nothing to serve) and retries after
  ``refetch_interval``, doubling up to ``refresh_interval``. ``max_stale`` bounds how long
  a set outlives its last good fetch (unbounded by default: an identity provider's outage
  then does not become yours).
- **Rotation without restarts.** A new ``kid`` is picked up by the next refresh, or at once
  by the first token that carries it; keys the endpoint no longer lists go with the next
  good fetch.
- **An unknown kid costs the endpoint at most one request per ``refetch_interval`` (30 s)
  per issuer**, however many tokens carry random kids, and concurrent lookups share one
  request.

Only the configured URLs are ever fetched, never one named by a token, and redirects are not
followed. Plain ``http://`` is refused except on loopback unless ``allow_http``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import httpx

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.events import BackendFailure, Listener, Publisher
from sysdesign_kit.gateway.jwk import parse_jwks
from sysdesign_kit.gateway.keys import VerificationKey

__all__ = ["JWKSKeys", "JWKSStatus"]

_log = logging.getLogger("sysdesign_kit.gateway.jwks")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})", re.IGNORECASE)
_ACCEPT = {"Accept": "application/jwk-set+json, application/json"}
_LOOPBACK_NAMES = {"localhost", "localhost."}


@dataclass(frozen=True, slots=True)
class JWKSStatus:
    """How one issuer's key set stands (for health checks and operators).

    Attributes:
        issuer: the issuer (None for a source over one URL).
        url: where its keys come from.
        kids: the kids served now.
        age: seconds since the last good fetch (None: never fetched).
        failures: fetches failed since the last good one (> 0: serving stale keys).
        last_error: why the last fetch failed (None after a good one).
    """

    issuer: str | None
    url: str
    kids: frozenset[str]
    age: float | None
    failures: int
    last_error: str | None


class _FetchFailed(Exception):
    """The endpoint's answer is not one to read keys from."""


class _Issuer:
    """What is known about one issuer's key set."""

    __slots__ = (
        "attempted_at",
        "component",
        "failures",
        "inflight",
        "issuer",
        "keys",
        "last_error",
        "loaded_at",
        "next_refresh",
        "skipped",
        "url",
    )

    def __init__(self, issuer: str | None, url: str) -> None:
        self.issuer = issuer
        self.url = url
        self.component = f"jwks:{issuer if issuer is not None else url}"
        self.keys: Mapping[str | None, VerificationKey] = {}
        self.loaded_at: float | None = None  # monotonic time of the last good fetch
        self.attempted_at: float | None = None  # monotonic time the last fetch started
        self.next_refresh = -math.inf
        self.failures = 0
        self.last_error: str | None = None
        self.skipped: tuple[str, ...] = ()
        self.inflight: asyncio.Task[None] | None = None


class JWKSKeys:
    """Verification keys from one JWKS URL per issuer, cached, refreshed, served stale.

    Args:
        urls: ``{issuer: jwks_url}``, keys then answer only for their issuer; or one URL,
            whose keys answer whatever the issuer (the verifier checks ``iss`` itself).
        client: the httpx client to fetch with (for instance one over
            `sysdesign_kit.http.AsyncResilientTransport`, for a breaker and retries); it is
            not closed by `aclose`. Redirects are followed only if it follows them.
        transport: the transport of the client made when none is given.
        clock: time source for every refresh decision and the background task's sleeps.
        refresh_interval: seconds between refreshes when the response has no max-age.
        min_refresh, max_refresh: bounds on a response's ``Cache-Control: max-age``.
        refetch_interval: the least time between two fetches of one issuer's set caused by
            unknown kids or retries after a failure.
        max_stale: seconds a set is served after its last good fetch while fetches fail;
            None keeps serving it.
        max_bytes: the largest response body read; a longer one is a failed fetch.
        timeout: seconds one fetch may take, the whole body included.
        min_rsa_bits: RSA keys shorter than this are refused.
        allow_http: accept ``http://`` URLs on hosts other than loopback.
        listeners: receive `BackendFailure` events on failed fetches.

    Raises:
        ConfigurationError: no URL, an empty issuer, a URL that is not https (or loopback
            http), or an interval that is not positive and in order.
    """

    def __init__(
        self,
        urls: str | Mapping[str, str],
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        refresh_interval: float = 300.0,
        min_refresh: float = 60.0,
        max_refresh: float = 3600.0,
        refetch_interval: float = 30.0,
        max_stale: float | None = None,
        max_bytes: int = 256 * 1024,
        timeout: float = 10.0,
        min_rsa_bits: int = 2048,
        allow_http: bool = False,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if isinstance(urls, str):
            pairs: list[tuple[str | None, str]] = [(None, urls)]
        elif isinstance(urls, Mapping):
            pairs = list(urls.items())
        else:
            raise ConfigurationError(f"urls must be a URL or {{issuer: URL}}, got {urls!r}")
        if not pairs:
            raise ConfigurationError("JWKSKeys needs at least one JWKS URL")
        for issuer, url in pairs:
            if issuer is not None and (not isinstance(issuer, str) or not issuer):
                raise ConfigurationError(f"issuer {issuer!r} must be a non-empty string")
            _check_url(url, allow_http=allow_http)
        for name, value in (
            ("refresh_interval", refresh_interval),
            ("min_refresh", min_refresh),
            ("max_refresh", max_refresh),
            ("refetch_interval", refetch_interval),
            ("timeout", timeout),
            ("max_stale", 1.0 if max_stale is None else max_stale),
            ("max_bytes", max_bytes),
        ):
            if not value > 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}")
        if not min_refresh <= max_refresh:
            raise ConfigurationError(f"min_refresh {min_refresh} exceeds max_refresh {max_refresh}")
        self._issuers = {issuer: _Issuer(issuer, url) for issuer, url in pairs}
        # One URL for every issuer: looked up without a dict access on the hot path.
        self._any = self._issuers[None] if isinstance(urls, str) else None
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False
        )
        self._clock = clock
        self._refresh_interval = float(refresh_interval)
        self._min_refresh = float(min_refresh)
        self._max_refresh = float(max_refresh)
        self._refetch_interval = float(refetch_interval)
        self._max_stale = max_stale
        self._max_bytes = max_bytes
        self._timeout = float(timeout)
        self._min_rsa_bits = min_rsa_bits
        self._events = Publisher(listeners)
        self._runner: asyncio.Task[None] | None = None

    # -- KeySource ------------------------------------------------------------------------

    def get(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
        """The key for ``kid`` (and ``issuer``) held now, without I/O; None if unknown."""
        state = self._any if issuer is None else (self._any or self._issuers.get(issuer))
        if state is None:
            return None
        if (
            self._max_stale is not None
            and state.loaded_at is not None
            and self._clock.monotonic() - state.loaded_at > self._max_stale
        ):
            return None
        return state.keys.get(kid)

    async def fetch(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
        """The key for ``kid``, fetching the issuer's set if the kid is unknown.

        The first call loads the set; an unknown kid refetches it at most once per
        ``refetch_interval``, and callers arriving meanwhile wait for the same request.
        Never raises for a failed fetch: the answer is then None (or the stale key).
        """
        state = self._any if issuer is None else (self._any or self._issuers.get(issuer))
        if state is None:
            return None
        key = self.get(kid, issuer)
        if key is not None:
            if (
                self._runner is None
                and state.inflight is None
                and self._clock.monotonic() >= state.next_refresh
            ):
                self._spawn(state)
            return key
        if state.inflight is None:
            if (
                state.attempted_at is not None
                and self._clock.monotonic() - state.attempted_at < self._refetch_interval
            ):
                return None
            self._spawn(state)
        await self._join(state)
        return self.get(kid, issuer)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch every issuer's set once (concurrently), then keep them fresh in the
        background. A failed first fetch is reported, not raised: it is retried."""
        if self._runner is not None:
            return
        await self.refresh()
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def refresh(self, issuer: str | None = None) -> None:
        """Fetch ``issuer``'s set now (every issuer's by default), joining a fetch under way.

        Raises:
            KeyError: ``issuer`` is not configured.
        """
        if issuer is None and self._any is None:
            states = list(self._issuers.values())
        else:
            state = self._any or self._issuers.get(issuer)
            if state is None:
                raise KeyError(issuer)
            states = [state]
        for state in states:
            if state.inflight is None:
                self._spawn(state)
        await asyncio.gather(*(self._join(state) for state in states))

    def status(self) -> list[JWKSStatus]:
        """Each issuer's key set as it stands now."""
        now = self._clock.monotonic()
        return [
            JWKSStatus(
                issuer=state.issuer,
                url=state.url,
                kids=frozenset(kid for kid in state.keys if kid is not None),
                age=None if state.loaded_at is None else now - state.loaded_at,
                failures=state.failures,
                last_error=state.last_error,
            )
            for state in self._issuers.values()
        ]

    async def aclose(self) -> None:
        """Stop the background task and any fetch under way; close the client made here."""
        tasks = [state.inflight for state in self._issuers.values() if state.inflight]
        if self._runner is not None:
            tasks.append(self._runner)
            self._runner = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in self._issuers.values():
            state.inflight = None
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> JWKSKeys:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the fetching -----------------------------------------------------------------------

    async def _run(self) -> None:
        states = list(self._issuers.values())
        while True:
            due = min(state.next_refresh for state in states) - self._clock.monotonic()
            if due > 0:
                # Never sleep past refetch_interval: a failed on-demand fetch may have moved
                # a retry earlier than the refresh this loop was waiting for.
                await self._clock.sleep(min(due, self._refetch_interval))
                continue
            now = self._clock.monotonic()
            for state in states:
                if state.next_refresh <= now and state.inflight is None:
                    self._spawn(state)
            await asyncio.gather(*(self._join(state) for state in states))

    def _spawn(self, state: _Issuer) -> None:
        state.attempted_at = self._clock.monotonic()
        state.inflight = asyncio.get_running_loop().create_task(self._load(state))

    @staticmethod
    async def _join(state: _Issuer) -> None:
        task = state.inflight
        if task is not None:
            # Shielded: a caller that gives up (a client gone) must not cancel the fetch
            # other callers are waiting on.
            await asyncio.shield(task)

    async def _load(self, state: _Issuer) -> None:
        try:
            body, max_age = await self._download(state.url)
            parsed = parse_jwks(body, issuer=state.issuer, min_rsa_bits=self._min_rsa_bits)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(state, exc)
        else:
            self._loaded(state, parsed.keys, parsed.skipped, max_age)
        finally:
            state.inflight = None

    async def _download(self, url: str) -> tuple[bytes, float | None]:
        async with (
            asyncio.timeout(self._timeout),
            self._client.stream("GET", url, headers=_ACCEPT) as response,
        ):
            if response.status_code != 200:
                raise _FetchFailed(f"HTTP {response.status_code}")
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self._max_bytes:
                raise _FetchFailed(f"body of {length} bytes, over {self._max_bytes}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise _FetchFailed(f"body over {self._max_bytes} bytes")
            return bytes(body), _max_age(response.headers.get_list("cache-control"))

    def _loaded(
        self,
        state: _Issuer,
        keys: Mapping[str | None, VerificationKey],
        skipped: tuple[str, ...],
        max_age: float | None,
    ) -> None:
        now = self._clock.monotonic()
        old, new = set(state.keys) - {None}, set(keys) - {None}
        if old != new:
            _log.info(
                "%s: keys %s (added %s, removed %s)",
                state.component,
                sorted(new, key=str),
                sorted(new - old, key=str),
                sorted(old - new, key=str),
            )
        if skipped != state.skipped:
            for line in skipped:
                _log.warning("%s: %s left out: %s", state.component, state.url, line)
        if state.failures:
            _log.info("%s: fetched again after %d failures", state.component, state.failures)
        state.keys = keys
        state.skipped = skipped
        state.loaded_at = now
        state.failures = 0
        state.last_error = None
        interval = self._refresh_interval if max_age is None else max_age
        state.next_refresh = now + min(max(interval, self._min_refresh), self._max_refresh)

    def _failed(self, state: _Issuer, exc: Exception) -> None:
        now = self._clock.monotonic()
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        state.failures += 1
        state.last_error = error
        backoff = self._refetch_interval * 2 ** min(state.failures - 1, 16)
        state.next_refresh = now + min(backoff, self._refresh_interval)
        outcome = "serve_stale" if state.keys else "fail_closed"
        _log.warning(
            "%s: fetching %s failed (%s), %s",
            state.component,
            state.url,
            error,
            "serving the last good keys" if state.keys else "no keys to serve",
        )
        if self._events:
            self._events.publish(
                BackendFailure(
                    component=state.component,
                    backend=state.url,
                    operation="fetch_jwks",
                    error=error,
                    outcome=outcome,
                )
            )


def _max_age(values: list[str]) -> float | None:
    if any("no-store" in value.lower() or "no-cache" in value.lower() for value in values):
        return 0.0
    for value in values:
        match = _MAX_AGE.search(value)
        if match:
            return float(match.group(1))
    return None


def _check_url(url: object, *, allow_http: bool) -> None:
    if not isinstance(url, str):
        raise ConfigurationError(f"JWKS URL {url!r} is not a string")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"JWKS URL {url!r} is not a URL: {exc}") from exc
    if not parsed.host or parsed.scheme not in ("https", "http"):
        raise ConfigurationError(f"JWKS URL {url!r} must be an absolute https URL")
    if parsed.scheme == "http" and not allow_http and not _loopback(parsed.host):
        raise ConfigurationError(
            f"JWKS URL {url!r} is plain http: keys fetched over it can be replaced on the "
            "way (use https, or allow_http=True)"
        )


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
