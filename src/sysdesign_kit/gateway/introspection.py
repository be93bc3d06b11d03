"""OAuth 2.0 token introspection (RFC 7662): opaque bearer tokens checked by their issuer.

::

    introspection = IntrospectionAuthenticator(
        "https://idp.example.com/oauth2/introspect",
        client_id="gateway", client_secret=os.environ["INTROSPECTION_SECRET"],
        audience="reference-system",
    )
    app = AuthenticationMiddleware(app, bearer=introspection)

Per token not in the cache: one ``POST`` of ``token`` (and ``token_type_hint``) with HTTP
Basic client authentication (RFC 6749 section 2.3.1: id and secret form-encoded first),
through an `AsyncResilientTransport` (a breaker on the endpoint, a total timeout, no
retries: a POST is sent once, and a slow identity provider should fail fast, not late).
Concurrent requests carrying the same token share that one call.

The answer: ``active`` must be JSON ``true``; then ``exp``/``nbf`` (with ``leeway``),
``iss`` and ``aud`` are checked when present or configured; ``sub`` (else ``client_id``)
becomes the principal's subject, ``scope`` its scopes, and the ``roles``, ``tier`` and
``tenant`` members its roles, tier and tenant. An inactive or refused token is
``invalid_token`` (401).

Caching: an active token's principal is kept until its ``exp``, never longer than
``max_cache_ttl`` (so a token revoked at the provider is refused within that time); an
inactive one is remembered ``negative_ttl`` seconds, so a client retrying a bad token does
not hammer the provider. At most ``cache_size`` entries, oldest dropped first; keys are the
tokens' SHA-256, so the cache holds no bearer token.

When the provider cannot answer (connection refused, timeout, a non-200 answer, a body
that is not a JSON object, the breaker open), `authenticate` raises `BackendUnavailable`
(the cause chained, a `CircuitOpen` among them) and `AuthenticationMiddleware` answers
503 with ``Retry-After``: it is not the client's credential that failed, and a 401 would
make well-behaved clients throw away good tokens. Nothing is cached then.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from base64 import b64encode
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from sysdesign_kit.clock import SYSTEM_CLOCK, Clock
from sysdesign_kit.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    CircuitOpen,
    ConfigurationError,
)
from sysdesign_kit.events import Listener
from sysdesign_kit.http import AsyncResilientTransport
from sysdesign_kit.principal import Principal

__all__ = ["IntrospectionAuthenticator"]

_INVALID = "invalid token"
_MAX_BODY = 64 * 1024
_decode = msgspec.json.Decoder().decode


class IntrospectionAuthenticator:
    """The `Authenticator` for opaque tokens (``method = "introspection"``).

    Args:
        endpoint: the introspection endpoint's URL (``https``; plain ``http`` only on a
            loopback address, or with ``allow_http``).
        client_id: this gateway's client id at the provider.
        client_secret: its secret (sent with HTTP Basic authentication).
        token_type_hint: sent as ``token_type_hint`` (None: not sent).
        issuer: when set, the answer's ``iss`` must equal it.
        audience: when set, the answer's ``aud`` (a string or a list) must contain it.
        leeway: seconds of clock skew allowed on ``exp`` and ``nbf``.
        timeout: seconds one introspection may take in all (connect, send, read).
        max_cache_ttl: longest time an active token's answer is reused, in seconds.
        negative_ttl: how long an inactive token's answer is reused (0: not at all).
        cache_size: most answers kept.
        max_token_length: longer tokens are refused without asking.
        default_tier: the tier of principals whose answer has no ``tier`` member.
        client: an httpx client of your own (its transport is then yours to make
            resilient); by default one over an `AsyncResilientTransport` is made.
        transport: the inner transport of the default client's resilient transport.
        breaker_settings: `CircuitBreaker` settings for the endpoint's breaker (default:
            the seed's 50% of at least 20 calls, open 30 s).
        allow_http: accept a plain-http endpoint that is not on loopback.
        clock: where ``exp`` (wall clock) and cache ages (monotonic) are read from.
        listeners: receive the breaker's events.

    Raises:
        ConfigurationError: a setting is unusable.
    """

    method = "introspection"

    def __init__(
        self,
        endpoint: str,
        *,
        client_id: str,
        client_secret: str,
        token_type_hint: str | None = "access_token",  # noqa: S107 - RFC 7662 hint name
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 5.0,
        timeout: float = 5.0,
        max_cache_ttl: float = 60.0,
        negative_ttl: float = 5.0,
        cache_size: int = 10_000,
        max_token_length: int = 4096,
        default_tier: str = "free",
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        breaker_settings: Mapping[str, Any] | None = None,
        allow_http: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[Listener] = (),
    ) -> None:
        url = httpx.URL(endpoint) if isinstance(endpoint, str) else None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        if url.scheme == "http" and not allow_http and not _loopback(url.host):
            raise ConfigurationError(
                f"endpoint {endpoint!r} would send the client secret and tokens in clear "
                "text: use https (or allow_http=True)"
            )
        if not isinstance(client_id, str) or not client_id or not isinstance(client_secret, str):
            raise ConfigurationError("client_id must be a non-empty str, client_secret a str")
        for name, value in (
            ("leeway", leeway),
            ("max_cache_ttl", max_cache_ttl),
            ("negative_ttl", negative_ttl),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{name} must be seconds, got {value!r}")
            if not 0 <= value < float("inf"):
                raise ConfigurationError(f"{name} must be finite seconds >= 0, got {value!r}")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")
        ):
            raise ConfigurationError(f"timeout must be positive seconds, got {timeout!r}")
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ConfigurationError(f"cache_size must be an int >= 1, got {cache_size!r}")
        if not isinstance(max_token_length, int) or max_token_length < 1:
            raise ConfigurationError("max_token_length must be an int >= 1")
        self.endpoint = str(url)
        self._owns_client = client is None
        if client is None:
            resilient = AsyncResilientTransport(
                transport,
                timeout=httpx.Timeout(timeout),
                total_timeout=float(timeout),
                breaker_settings=breaker_settings,
                clock=clock,
                listeners=listeners,
            )
            client = httpx.AsyncClient(
                transport=resilient, timeout=httpx.Timeout(timeout), follow_redirects=False
            )
        self._client = client
        credentials = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        self._headers = {
            "authorization": "Basic " + b64encode(credentials.encode()).decode("ascii"),
            "accept": "application/json",
        }
        self._hint = token_type_hint
        self._issuer = issuer
        self._audience = audience
        self._leeway = float(leeway)
        self._max_ttl = float(max_cache_ttl)
        self._negative_ttl = float(negative_ttl)
        self._cache_size = cache_size
        self._max_token = max_token_length
        self._default_tier = default_tier
        self._clock = clock
        # token digest -> (monotonic expiry, principal, or the refusal's log message)
        self._cache: dict[bytes, tuple[float, Principal | str]] = {}
        self._inflight: dict[bytes, asyncio.Future[Principal | str]] = {}

    async def authenticate(self, credential: str) -> Principal:
        """The principal the provider says ``credential`` belongs to.

        Raises:
            AuthenticationFailed: ``invalid_token``: inactive, expired, wrong issuer or
                audience, or too long.
            BackendUnavailable: the provider could not be asked or gave no usable answer.
        """
        if len(credential) > self._max_token or not credential.isascii():
            # RFC 6750 tokens are ASCII; anything else is not worth asking about.
            raise AuthenticationFailed("token too long or not ASCII", description=_INVALID)
        key = hashlib.sha256(credential.encode()).digest()
        entry = self._cache.get(key)
        if entry is not None:
            if entry[0] > self._clock.monotonic():
                return _outcome(entry[1])
            self._cache.pop(key, None)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._introspect(credential, key))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        # Shielded: a caller that goes away does not cancel the call others wait on.
        return _outcome(await asyncio.shield(pending))

    async def _introspect(self, token: str, key: bytes) -> Principal | str:
        form = {"token": token}
        if self._hint:
            form["token_type_hint"] = self._hint
        try:
            response = await self._client.post(self.endpoint, data=form, headers=self._headers)
        except CircuitOpen as exc:
            raise BackendUnavailable("introspection endpoint's breaker is open") from exc
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"introspection failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise BackendUnavailable(f"introspection endpoint answered {response.status_code}")
        if len(response.content) > _MAX_BODY:
            raise BackendUnavailable("introspection answer too large")
        try:
            answer = _decode(response.content)
        except msgspec.DecodeError as exc:
            raise BackendUnavailable("introspection answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise BackendUnavailable("introspection answer is not a JSON object")
        outcome, ttl = self._judge(answer)
        if ttl > 0:
            cache = self._cache
            if len(cache) >= self._cache_size:
                # Oldest first: insertion order is age order, and this stays O(1).
                cache.pop(next(iter(cache)))
            cache[key] = (self._clock.monotonic() + ttl, outcome)
        return outcome

    def _judge(self, answer: dict[str, Any]) -> tuple[Principal | str, float]:
        """The principal (or why the token is refused) and how long to keep that answer."""
        refused = self._negative_ttl
        if answer.get("active") is not True:
            return "token is not active", refused
        now = self._clock.time()
        exp = answer.get("exp")
        if exp is not None and not _number(exp):
            return "exp is not a number", refused
        if exp is not None and exp + self._leeway <= now:
            return "token expired", refused
        nbf = answer.get("nbf")
        if nbf is not None and (not _number(nbf) or nbf - self._leeway > now):
            return "token not yet valid", refused
        if self._issuer is not None and answer.get("iss") != self._issuer:
            return "wrong issuer", refused
        if self._audience is not None:
            aud = answer.get("aud")
            if not (aud == self._audience or (isinstance(aud, list) and self._audience in aud)):
                return "wrong audience", refused
        subject = answer.get("sub") or answer.get("client_id")
        if not isinstance(subject, str):
            return "no subject in the introspection answer", refused
        scopes = _names(answer.get("scope"))
        roles = _names(answer.get("roles"))
        tier = answer.get("tier", self._default_tier)
        tenant = answer.get("tenant")
        if scopes is None or roles is None or not isinstance(tier, str):
            return "malformed scope, roles or tier", refused
        if tenant is not None and not isinstance(tenant, str):
            return "malformed tenant", refused
        principal = Principal(
            subject,
            tier=tier,
            scopes=scopes,
            roles=roles,
            tenant=tenant,
            method=self.method,
            claims=MappingProxyType(answer),
        )
        ttl = self._max_ttl if exp is None else min(self._max_ttl, exp + self._leeway - now)
        return principal, ttl

    async def aclose(self) -> None:
        """Close the httpx client this authenticator made (one given to it is left open)."""
        if self._owns_client:
            await self._client.aclose()


def _outcome(outcome: Principal | str) -> Principal:
    if isinstance(outcome, Principal):
        return outcome
    # A fresh exception per refusal: re-raising one instance would grow its traceback.
    raise AuthenticationFailed(outcome, description=_INVALID)


def _number(value: object) -> bool:
    # Bounded: a JSON integer past what a float holds would overflow the arithmetic.
    return isinstance(value, int | float) and not isinstance(value, bool) and -1e15 < value < 1e15


def _names(value: object) -> frozenset[str] | None:
    """Scopes or roles: a space-separated string or a list of strings (None: malformed)."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
