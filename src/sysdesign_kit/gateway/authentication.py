"""``AuthenticationMiddleware``: who is calling, as a `Principal` in the ASGI scope.

Per HTTP request (and websocket handshake): read ``Authorization: Bearer <token>`` and the
API-key header, hand the credential to the `Authenticator` registered for it (JWT, OAuth
introspection, API keys), and store the `Principal` it returns with `set_principal`, so the
rate limiter's tiers, RBAC and the app all see one identity. The middleware only
authenticates; which routes need which scopes or roles is RBAC's business.

What a request gets (RFC 6750 and RFC 9110 section 11):

====================================================  ======  ==============================
request                                               status  ``WWW-Authenticate`` error
====================================================  ======  ==============================
valid credential                                      app     -
no credential, ``required=False``                     app     - (anonymous)
no credential, ``required=True``                      401     none (realm only)
another scheme (``Basic ...``)                        401     none (realm only)
two ``Authorization`` (or two API-key) headers         400     ``invalid_request``
both a bearer token and an API key                    400     ``invalid_request``
malformed: no token, two spaces, a tab, characters    400     ``invalid_request``
outside RFC 6750's ``b64token``, over the size limit
credential refused by its authenticator               401     ``invalid_token`` (or what the
                                                              authenticator raised)
authenticator's backend down (`BackendUnavailable`,    503     - (``Retry-After`` instead)
`CircuitOpen`) or a bug in it
====================================================  ======  ==============================

Parsing is deliberate and strict where RFC 6750 allows a choice: the scheme is matched
case-insensitively (``bearer`` and ``BEARER`` are accepted, as RFC 9110 requires), but
exactly one space must separate it from the token (the grammar's ``1*SP`` allows more; no
real client sends them, and a mangled header is better refused than guessed at). Tokens in
query strings or form bodies are not read: they end up in logs. Every refusal carries an
RFC 9457 problem+json body whose text never repeats what the client sent.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from sysdesign_kit.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    ConfigurationError,
    Rejected,
)
from sysdesign_kit.events import AuthFailed, AuthSucceeded, Listener, Publisher
from sysdesign_kit.gateway._respond import send_problem
from sysdesign_kit.gateway.authenticator import Authenticator
from sysdesign_kit.gateway.challenge import challenge
from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal
from sysdesign_kit.timeline import TIMELINE_SCOPE_KEY, Timeline

__all__ = ["DEFAULT_MAX_CREDENTIAL_LENGTH", "UNDECIDED", "AuthenticationMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Longest credential read (bytes); a longer one is a malformed request. JWTs with many
#: claims stay well under it; the JWT verifier applies its own, smaller limit.
DEFAULT_MAX_CREDENTIAL_LENGTH = 16 * 1024

_log = logging.getLogger("sysdesign_kit.gateway")

# RFC 9110 token for the scheme, one space, RFC 6750 b64token.
_CREDENTIALS = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([0-9A-Za-z._~+/-]+=*)")
_SCHEME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_B64TOKEN = re.compile(rb"[0-9A-Za-z._~+/-]+=*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_REALM = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,200}")
_OWS = b" \t"
# What a b64token may hold before its trailing "=" padding (RFC 6750 2.1).
_B64TOKEN_BYTES = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._~+/-"

_BEARER = "Bearer"
_API_KEY = "APIKey"
# Never a header name (they are lowercase tokens): what an unconfigured method "reads".
_UNUSED = b"\x00"

#: `AuthenticationMiddleware.peek`: the layer has to run to know.
UNDECIDED = object()

# Refusals decided by the middleware itself:
# (scheme the error is about, status, RFC 6750 error, description, event reason).
_Refusal = tuple[str | None, int, str, str, str]
_DUPLICATE_AUTHORIZATION: _Refusal = (
    None, 400, "invalid_request", "more than one Authorization header", "multiple_headers"
)  # fmt: skip
_DUPLICATE_KEY: _Refusal = (
    None, 400, "invalid_request", "more than one API key header", "multiple_headers"
)  # fmt: skip
_BOTH: _Refusal = (
    None, 400, "invalid_request", "more than one credential in the request",
    "multiple_credentials",
)  # fmt: skip
_MISSING: _Refusal = (None, 401, "", "authentication required", "missing")
_UNSUPPORTED: _Refusal = (
    None, 401, "", "unsupported authentication scheme", "unsupported_scheme"
)  # fmt: skip
_TOO_LONG_BEARER: _Refusal = (
    _BEARER, 400, "invalid_request", "credentials too long", "too_long"
)  # fmt: skip
_TOO_LONG_KEY: _Refusal = (_API_KEY, 400, "invalid_request", "credentials too long", "too_long")
_MALFORMED_BEARER: _Refusal = (
    _BEARER, 400, "invalid_request", "malformed Authorization header", "malformed"
)  # fmt: skip
_MALFORMED_KEY: _Refusal = (_API_KEY, 400, "invalid_request", "malformed API key", "malformed")


class AuthenticationMiddleware:
    """Authenticate every HTTP request (and websocket handshake) before the app sees it.

    Args:
        app: the ASGI app to protect.
        bearer: verifies ``Authorization: Bearer`` tokens (a JWT verifier, an
            introspection client...); None: the ``Authorization`` header is left alone.
        api_key: verifies the API-key header's value; None: that header is ignored.
        api_key_header: the header API keys come in (case-insensitive).
        required: refuse requests without credentials (401). By default they go through
            as anonymous, and RBAC decides per route.
        anonymous: the principal stored for anonymous requests (for example
            ``Principal("anonymous", tier="anonymous")``); None stores nothing, which is
            what the rate limiter expects to key anonymous callers by address (a shared
            anonymous principal would put them all under one key).
        realm: the ``realm`` of the challenges (printable ASCII without ``"`` or ``\\``).
        max_credential_length: longest header value read, in bytes.
        websockets: authenticate websocket handshakes too (refused ones get an HTTP
            answer where the server supports it, else close code 1008).
        retry_after: seconds put in ``Retry-After`` of a 503 when the authenticator's
            failure does not say how long.
        listeners: receive `AuthSucceeded` and `AuthFailed`.

    Raises:
        ConfigurationError: neither authenticator is given, one does not implement
            `Authenticator`, or the realm or header name is unusable.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        bearer: Authenticator | None = None,
        api_key: Authenticator | None = None,
        api_key_header: str = "x-api-key",
        required: bool = False,
        anonymous: Principal | None = None,
        realm: str | None = "api",
        max_credential_length: int = DEFAULT_MAX_CREDENTIAL_LENGTH,
        websockets: bool = True,
        retry_after: int = 5,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if bearer is None and api_key is None:
            raise ConfigurationError("give at least one of bearer= and api_key=")
        for label, authenticator in (("bearer", bearer), ("api_key", api_key)):
            if authenticator is not None and not isinstance(authenticator, Authenticator):
                raise ConfigurationError(
                    f"{label} must implement Authenticator (method, async authenticate), "
                    f"got {authenticator!r}"
                )
        header = api_key_header.lower() if isinstance(api_key_header, str) else ""
        if not _HEADER_NAME.fullmatch(header) or header == "authorization":
            raise ConfigurationError(f"api_key_header {api_key_header!r} is not a usable header")
        if realm is not None and not (isinstance(realm, str) and _REALM.fullmatch(realm)):
            raise ConfigurationError(
                f"realm must be 1..200 printable ASCII characters without '\"' or '\\\\', "
                f"got {realm!r}"
            )
        if anonymous is not None and not isinstance(anonymous, Principal):
            raise ConfigurationError(f"anonymous must be a Principal or None, got {anonymous!r}")
        if isinstance(max_credential_length, bool) or not isinstance(max_credential_length, int):
            raise ConfigurationError("max_credential_length must be an int")
        if not 16 <= max_credential_length <= 1024 * 1024:
            raise ConfigurationError(
                f"max_credential_length must be 16..1048576 bytes, got {max_credential_length}"
            )
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1:
            raise ConfigurationError(f"retry_after must be a positive int, got {retry_after!r}")
        self.app = app
        self.bearer = bearer
        self.api_key = api_key
        self.required = required
        self.anonymous = anonymous
        self.realm = realm
        self._key_header = header.encode("ascii") if api_key is not None else _UNUSED
        self._auth_header = b"authorization" if bearer is not None else _UNUSED
        self._key_header_name = header
        self._max = max_credential_length
        self._websockets = websockets
        self._retry_after = retry_after
        self.events = Publisher(listeners)
        remembered = getattr(bearer, "remembered", None)
        self._remembered: Callable[[str], object] | None = (
            remembered if callable(remembered) else None
        )
        # Challenges without an error, built once: every 401 for missing credentials
        # sends exactly these.
        self._methods = {
            scheme: used.method
            for scheme, used in ((_BEARER, bearer), (_API_KEY, api_key))
            if used is not None
        }
        self._plain = {
            scheme: self._challenge(scheme, "", "")
            for scheme, used in ((_BEARER, bearer), (_API_KEY, api_key))
            if used is not None
        }

    def _challenge(self, scheme: str, error: str, description: str) -> bytes:
        extra = {"header": self._key_header_name} if scheme == _API_KEY else {}
        return challenge(
            scheme,
            realm=self.realm,
            error=error or None,
            error_description=(description or None) if error else None,
            **extra,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and (kind != "websocket" or not self._websockets):
            await self.app(scope, receive, send)
            return
        timeline = scope.get(TIMELINE_SCOPE_KEY)
        started = Timeline.now() if timeline is not None else 0.0
        # Written out flat (one header scan, sync parsing, one coroutine for the check):
        # this runs on every request.
        authorization: bytes | None = None
        key: bytes | None = None
        duplicate: _Refusal | None = None
        auth_header = self._auth_header
        key_header = self._key_header
        for name, value in scope["headers"]:
            if name == auth_header:
                if authorization is not None:
                    duplicate = _DUPLICATE_AUTHORIZATION
                authorization = value
            elif name == key_header:
                if key is not None:
                    duplicate = _DUPLICATE_KEY
                key = value
        refused: bool | None = None
        if duplicate is not None:
            refused = await self._refuse(scope, send, *duplicate)
        elif authorization is not None:
            if key is not None:
                refused = await self._refuse(scope, send, *_BOTH)
            else:
                parsed = self._parse_bearer(authorization)
                if type(parsed) is bytes:
                    refused = await self._verify(scope, send, self.bearer, _BEARER, parsed)
                else:
                    refused = await self._refuse(scope, send, *parsed)
        elif key is not None:
            parsed = self._parse_key(key)
            if type(parsed) is bytes:
                refused = await self._verify(scope, send, self.api_key, _API_KEY, parsed)
            else:
                refused = await self._refuse(scope, send, *parsed)
        elif self.required:
            refused = await self._refuse(scope, send, *_MISSING)
        elif self.anonymous is not None:
            scope[PRINCIPAL_SCOPE_KEY] = self.anonymous
        if timeline is not None:
            timeline.since("auth", started)
        if not refused:
            await self.app(scope, receive, send)

    def peek(self, scope: Scope) -> Principal | object | None:
        """What this layer would put in ``scope`` for its request, when that is known
        without awaiting anything; else `UNDECIDED`.

        Known: no credential (the anonymous principal, or None, when not `required`) or
        one well-formed bearer token whose principal the authenticator still remembers
        (`JWTAuthenticator.remembered`). Anything else (a token to verify, an API key, a
        header to refuse) is `UNDECIDED`: the caller runs the layer itself. Sends nothing
        and changes nothing, so the layer can still run after it.
        """
        authorization: bytes | None = None
        auth_header = self._auth_header
        key_header = self._key_header
        for name, value in scope["headers"]:
            if name == auth_header:
                if authorization is not None:
                    return UNDECIDED
                authorization = value
            elif name == key_header:
                return UNDECIDED
        if authorization is None:
            return UNDECIDED if self.required else self.anonymous
        remembered = self._remembered
        if remembered is None or authorization[:7] != b"Bearer ":
            return UNDECIDED
        # Only a token that passed the full parse and verification is remembered, so a
        # hit needs no charset check; latin-1 never fails, and a non-ASCII token misses.
        principal = remembered(authorization[7:].rstrip(_OWS).decode("latin-1"))
        return principal if isinstance(principal, Principal) else UNDECIDED

    def would_verify(self, scope: Scope) -> bool:
        """The request carries an ``Authorization`` header this layer cannot settle from
        memory: a bearer token the authenticator does not remember, or a malformed or
        repeated header. API keys alone are not counted (checking one is cheap)."""
        auth_header = self._auth_header
        for name, _ in scope["headers"]:
            if name == auth_header:
                return self.peek(scope) is UNDECIDED
        return False

    def _parse_bearer(self, value: bytes) -> bytes | _Refusal:
        """The token of ``Bearer <token>``, or why the header is refused."""
        value = value.strip(_OWS)
        if len(value) > self._max:
            return _TOO_LONG_BEARER
        # The usual "Bearer <token>": one C-level pass over the token instead of a regex
        # (this runs on every request); anything else takes the full grammar below.
        if value[:7] == b"Bearer ":
            body = value[7:].rstrip(b"=")
            if body and not body.translate(None, _B64TOKEN_BYTES):
                return value[7:]
        match = _CREDENTIALS.fullmatch(value)
        if match is None:
            # Not "<scheme> <b64token>": a bare or well-formed other scheme is a credential
            # of a kind we do not take (RFC 6750: no error code); anything else is broken.
            scheme = value.split(b" ", 1)[0]
            if _SCHEME.fullmatch(scheme) and scheme.lower() != b"bearer":
                return _UNSUPPORTED
            return _MALFORMED_BEARER
        if match.group(1).lower() != b"bearer":
            return _UNSUPPORTED
        return match.group(2)

    def _parse_key(self, value: bytes) -> bytes | _Refusal:
        """The API key, or why the header is refused."""
        value = value.strip(_OWS)
        if len(value) > self._max:
            return _TOO_LONG_KEY
        if not _B64TOKEN.fullmatch(value):
            return _MALFORMED_KEY
        return value

    async def _verify(
        self,
        scope: Scope,
        send: Send,
        authenticator: Authenticator | None,
        scheme: str,
        credential: bytes,
    ) -> bool:
        assert authenticator is not None  # its header is only read when it is configured
        try:
            # The charsets checked above are ASCII, so this cannot fail.
            principal = await authenticator.authenticate(credential.decode("ascii"))
        except AuthenticationFailed as exc:
            error = exc.error if exc.error in ("invalid_request", "invalid_token") else ""
            return await self._refuse(
                scope, send, scheme if error else None, exc.status, error,
                exc.description, error or "invalid", method=authenticator.method,
            )  # fmt: skip
        except Exception as exc:
            return await self._unavailable(scope, send, authenticator.method, exc)
        if not isinstance(principal, Principal):
            _log.error("authenticator %r returned %r, not a Principal", authenticator, principal)
            return await self._unavailable(scope, send, authenticator.method, None)
        scope[PRINCIPAL_SCOPE_KEY] = principal
        events = self.events
        if events:
            events.publish(AuthSucceeded("auth", authenticator.method, principal.subject))
        return False

    async def _unavailable(
        self, scope: Scope, send: Send, method: str, exc: Exception | None
    ) -> bool:
        """503: the credential could not be checked now (fail closed, never a 500)."""
        retry_after = float(self._retry_after)
        for candidate in (exc, exc.__cause__ if exc is not None else None):
            if isinstance(candidate, Rejected) and math.isfinite(candidate.retry_after):
                retry_after = max(1.0, candidate.retry_after)
                break
        if exc is not None and not isinstance(exc, BackendUnavailable | Rejected):
            _log.error("authenticator %s raised; answering 503", method, exc_info=exc)
        events = self.events
        if events:
            events.publish(AuthFailed("auth", method, "unavailable"))
        seconds = math.ceil(retry_after)
        await send_problem(
            scope, send, 503, "authentication is temporarily unavailable",
            headers=[(b"retry-after", b"%d" % seconds)], extra={"retry_after": seconds},
        )  # fmt: skip
        return True

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        scheme: str | None,
        status: int,
        error: str,
        description: str,
        reason: str,
        *,
        method: str = "",
    ) -> bool:
        """Answer 400/401 with the challenges; ``scheme`` is the one the error is about
        (None: the error, if any, is about the request as a whole)."""
        events = self.events
        if events:
            if not method and scheme is not None:
                method = self._methods[scheme]
            events.publish(AuthFailed("auth", method, reason))
        headers = []
        for name, plain in self._plain.items():
            value = (
                self._challenge(name, error, description)
                if error and (scheme is None or scheme == name)
                else plain
            )
            headers.append((b"www-authenticate", value))
        await send_problem(scope, send, status, description, headers=headers)
        return True
