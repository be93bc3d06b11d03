"""``PrincipalHeadersMiddleware``: tell upstreams who is calling, and never let a client say it.

Upstream services behind the gateway trust headers such as ``X-User-Id``; that trust only
holds if no client can send them. So on every request the layer first removes each of its
headers from what the client sent (whatever the case, and with ``_`` read as ``-``: some
servers and CGI-style frameworks map ``X_User_Id`` to the same variable as ``X-User-Id``),
with or without a principal, then adds the principal's:

=================  ===============  =======================================================
header (default)   from             value
=================  ===============  =======================================================
``x-user-id``      ``subject``      the subject
``x-user-roles``   ``roles``        sorted, comma-separated (absent when none)
``x-user-scopes``  ``scopes``       sorted, space-separated, as OAuth writes scopes
``x-tenant-id``    ``tenant``       absent when None
``x-user-tier``    ``tier``         the plan (``free``, ``premium``...)
``x-auth-method``  ``method``       ``jwt``, ``api_key``... (absent when empty)
=================  ===============  =======================================================

Values are sent as they are when they are printable ASCII without ``%``, ``,`` or spaces;
otherwise UTF-8 percent-encoded, so no value can break a header or a list (decode with
``urllib.parse.unquote``). The headers of a principal are built once and kept (a bounded
map), so a returning caller costs a dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._respond import ASGIApp, Receive, Scope, Send
from sysdesign_kit.principal import PRINCIPAL_SCOPE_KEY, Principal

__all__ = ["PrincipalHeadersMiddleware"]

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
# Printable ASCII but the percent sign (the escape), the comma (the list separator) and
# space (the scope separator).
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%,")
_CACHE_SIZE = 4096
# Header names compared case-insensitively, with "_" read as "-".
_FOLD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_", b"abcdefghijklmnopqrstuvwxyz-")
Headers = list[tuple[bytes, bytes]]


def _header_name(value: str, what: str) -> bytes:
    name = value.strip().lower().replace("_", "-")
    if not name or not set(name) <= _TCHAR:
        raise ConfigurationError(f"{what} {value!r} is not a valid HTTP header name")
    return name.encode("ascii")


def _value(text: str) -> bytes:
    if text.isascii() and text.isprintable() and not any(c in text for c in "%, "):
        return text.encode("ascii")
    return quote(text, safe=_SAFE).encode("ascii")


class PrincipalHeadersMiddleware:
    """Strip identity headers sent by clients; add the principal's for the layers below.

    Args:
        app: the ASGI app (typically the reverse proxy, which forwards request headers).
        subject, roles, scopes, tenant, tier, method: the header carrying each field of
            the `Principal`; None to leave one out (it is then not stripped either,
            unless listed in ``strip``).
        strip: more header names to remove from every request.
        strip_prefixes: remove every header starting with one of these (e.g. ``"x-user-"``).

    Raises:
        ConfigurationError: a name that is not an HTTP header name.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        subject: str | None = "x-user-id",
        roles: str | None = "x-user-roles",
        scopes: str | None = "x-user-scopes",
        tenant: str | None = "x-tenant-id",
        tier: str | None = "x-user-tier",
        method: str | None = "x-auth-method",
        strip: Iterable[str] = (),
        strip_prefixes: Iterable[str] = (),
    ) -> None:
        if isinstance(strip, str) or isinstance(strip_prefixes, str):
            raise ConfigurationError("strip and strip_prefixes are lists of names, not one string")
        fields = {
            "subject": subject,
            "roles": roles,
            "scopes": scopes,
            "tenant": tenant,
            "tier": tier,
            "method": method,
        }
        self.app = app
        self.names: dict[str, bytes] = {
            field: _header_name(name, field) for field, name in fields.items() if name is not None
        }
        self._strip = frozenset(
            [*self.names.values(), *(_header_name(name, "strip") for name in strip)]
        )
        self._prefixes = tuple(_header_name(p, "strip_prefixes") for p in strip_prefixes)
        self._lengths = frozenset(len(name) for name in self._strip)
        self._cache: dict[Principal, Headers] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            strip = self._strip
            headers = scope.get("headers") or ()
            if self._prefixes:
                prefixes = self._prefixes
                kept: Headers = [
                    (key, value)
                    for key, value in headers
                    if (name := key.translate(_FOLD)) not in strip and not name.startswith(prefixes)
                ]
            else:
                # Folding keeps the length: only names as long as one stripped are folded.
                lengths = self._lengths
                kept = [
                    (key, value)
                    for key, value in headers
                    if len(key) not in lengths or key.translate(_FOLD) not in strip
                ]
            principal = scope.get(PRINCIPAL_SCOPE_KEY)
            if isinstance(principal, Principal):
                added = self._cache.get(principal)
                if added is None:
                    added = self.headers_for(principal)
                    if len(self._cache) >= _CACHE_SIZE:
                        self._cache.clear()
                    self._cache[principal] = added
                kept.extend(added)
            scope["headers"] = kept
        await self.app(scope, receive, send)

    def headers_for(self, principal: Principal) -> Headers:
        """The headers this layer adds for ``principal``."""
        names = self.names
        out: Headers = []
        if "subject" in names:
            out.append((names["subject"], _value(principal.subject)))
        if "roles" in names and principal.roles:
            out.append((names["roles"], b",".join(_value(r) for r in sorted(principal.roles))))
        if "scopes" in names and principal.scopes:
            out.append((names["scopes"], b" ".join(_value(s) for s in sorted(principal.scopes))))
        if "tenant" in names and principal.tenant is not None:
            out.append((names["tenant"], _value(principal.tenant)))
        if "tier" in names:
            out.append((names["tier"], _value(principal.tier)))
        if "method" in names and principal.method:
            out.append((names["method"], _value(principal.method)))
        return out
