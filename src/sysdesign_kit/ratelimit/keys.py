"""Key functions: which bucket a request is counted in, read from the ASGI scope.

A key function takes the ASGI scope and returns a key, or ``None`` when it has nothing to
say (no API key header, no authenticated principal): the rule that uses it is then skipped.
Every key these functions return is ASCII and at most `MAX_PART` characters plus a short
prefix: client-supplied text that is longer, not ASCII or not printable is replaced by its
BLAKE2b digest, so a 10 kB or non-UTF-8 header can never make a key the limiter refuses.

The client address honours ``X-Forwarded-For`` or ``Forwarded`` (RFC 7239) only when the
socket peer is a trusted proxy; see `ClientIP`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any, Literal

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.principal import get_principal

__all__ = [
    "MAX_PART",
    "ClientIP",
    "KeyFunc",
    "by_api_key",
    "by_ip",
    "by_route",
    "by_subject",
    "by_subject_or_ip",
    "safe_key",
]

Scope = MutableMapping[str, Any]
#: A key function: the scope in, a key (or None: "this rule does not apply") out.
KeyFunc = Callable[[Scope], str | None]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Longest piece of caller-controlled text kept verbatim in a key; longer text is hashed.
MAX_PART = 200
# Forwarding headers longer than this are an attack or a misconfiguration, never a real chain.
_MAX_FORWARDED = 8192
_MAX_HOPS = 64
_UNKNOWN = "unknown"
# RFC 7239 section 6.3: "_" then letters, digits, ".", "_" or "-"; an optional port.
_OBFUSCATED = re.compile(r"^(_[A-Za-z0-9._-]{1,64})(?::(?:[0-9]{1,5}|_[A-Za-z0-9._-]{1,64}))?$")


def safe_key(prefix: str, value: str | bytes) -> str:
    """``prefix + value`` when ``value`` is short printable ASCII, else ``prefix`` + a digest.

    The digest (BLAKE2b, 16 bytes, hex) keeps distinct values distinct while bounding the
    key's length, so caller-controlled text cannot exhaust memory or break the backend.
    """
    if isinstance(value, str):
        if 0 < len(value) <= MAX_PART and value.isascii() and value.isprintable():
            return prefix + value
        data = value.encode("utf-8", "surrogatepass")
    else:
        if 0 < len(value) <= MAX_PART and value.isascii():
            text = value.decode("ascii")
            if text.isprintable():
                return prefix + text
        data = value
    return prefix + "~" + hashlib.blake2b(data, digest_size=16).hexdigest()


def _header(scope: Scope, name: bytes) -> bytes | None:
    """All values of header ``name`` (lower-case) joined by commas, as RFC 9110 allows."""
    found: list[bytes] = []
    for key, value in scope.get("headers") or ():
        if key == name:
            found.append(value)
    if not found:
        return None
    return found[0] if len(found) == 1 else b",".join(found)


class ClientIP:
    """Finds the client's address, believing forwarding headers only from trusted proxies.

    Without trusted proxies the answer is the socket peer (``scope["client"]``) and the
    headers are ignored: anyone can send them. With trusted proxies, the chain in the chosen
    header is walked from the right (the hop nearest to us) skipping trusted hops; the first
    untrusted hop is the client. If every hop is trusted, the left-most one is the client.

    Malformed input never raises. An entry that is not an address (garbage, ``unknown``)
    stops the walk and the nearest hop already established is used instead: the socket
    peer when the garbage is in the last entry. An RFC 7239 obfuscated identifier
    (``for=_hidden``) set by a trusted proxy is that proxy's stable name for its client, so
    it is returned as is.

    Args:
        trusted_proxies: addresses or CIDR networks of the proxies in front of this app,
            e.g. ``["10.0.0.0/8", "::1"]``.
        header: which header those proxies set: ``"x-forwarded-for"`` (default) or
            ``"forwarded"`` (RFC 7239). Only that one is read: a header the proxies do not
            overwrite is under the client's control.

    Raises:
        ConfigurationError: a trusted proxy that is not an address or network, or an
            unknown header.
    """

    __slots__ = ("_header", "_networks", "_parse")

    def __init__(
        self,
        trusted_proxies: Iterable[str] = (),
        *,
        header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
    ) -> None:
        networks = []
        for entry in trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR network"
                ) from None
        if header not in ("x-forwarded-for", "forwarded"):
            raise ConfigurationError(f"header={header!r} must be 'x-forwarded-for' or 'forwarded'")
        self._networks = tuple(networks)
        self._header = header.encode("ascii")
        self._parse: Callable[[str], list[str]] = (
            _forwarded_nodes if header == "forwarded" else _xff_nodes
        )

    @property
    def peer_only(self) -> bool:
        """True when no proxy is trusted: the answer is always the socket peer."""
        return not self._networks

    def __call__(self, scope: Scope) -> str:
        """The client's address as text (``"unknown"`` when the server gave no peer)."""
        client = scope.get("client")
        peer = str(client[0]) if client else _UNKNOWN
        if not self._networks:
            return peer
        peer_ip = _ip(peer)
        if peer_ip is None or not self._trusted(peer_ip):
            return peer
        raw = _header(scope, self._header)
        if raw is None or len(raw) > _MAX_FORWARDED:
            return peer
        nearest = peer
        for node in reversed(self._parse(raw.decode("latin-1"))[-_MAX_HOPS:]):
            address = _ip(node)
            if address is None:
                obfuscated = _OBFUSCATED.match(node)
                return obfuscated[1] if obfuscated else nearest
            nearest = str(address)
            if not self._trusted(address):
                return nearest
        return nearest

    def _trusted(self, address: IPAddress) -> bool:
        for network in self._networks:
            if address.version == network.version and address in network:
                return True
        return False


def _ip(text: str) -> IPAddress | None:
    """Parse an address as found in forwarding headers: bare, ``[v6]:port`` or ``v4:port``."""
    if not text or len(text) > 64:
        return None
    if text[0] == "[":
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _xff_nodes(value: str) -> list[str]:
    return [part.strip() for part in value.split(",")]


def _forwarded_nodes(value: str) -> list[str]:
    """The ``for=`` node of each element of an RFC 7239 ``Forwarded`` value.

    Quoted strings may hold ``,`` and ``;``, so the value is scanned rather than split. An
    element without ``for=`` yields ``""`` (which stops the walk as malformed).
    """
    nodes: list[str] = []
    current = ""
    pair: list[str] = []
    in_quotes = escaped = False
    for char in value + ",":
        if in_quotes:
            if escaped:
                pair.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
            else:
                pair.append(char)
        elif char == '"':
            in_quotes = True
        elif char in ";,":
            name, sep, node = "".join(pair).partition("=")
            if sep and name.strip().lower() == "for":
                current = node.strip()
            pair = []
            if char == ",":
                nodes.append(current)
                current = ""
        else:
            pair.append(char)
    if in_quotes:
        nodes.append("")  # an unterminated quote swallowed the last element: malformed
    return nodes


def by_ip(
    trusted_proxies: Sequence[str] = (),
    *,
    header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
) -> KeyFunc:
    """Key by client address: ``"ip:<address>"`` (see `ClientIP` for the proxy rules)."""
    client_ip = ClientIP(trusted_proxies, header=header)

    def key(scope: Scope) -> str:
        return safe_key("ip:", client_ip(scope))

    return key


def by_api_key(header: str = "x-api-key") -> KeyFunc:
    """Key by API key header: ``"key:<digest>"``, or None when the header is absent.

    The secret itself never becomes a key (keys show up in events, logs and Redis): it is
    replaced by a 16-byte BLAKE2b digest, whatever its length or bytes.
    """
    name = header.strip().lower().encode("latin-1")
    if not name:
        raise ConfigurationError("by_api_key: header must be a non-empty header name")

    def key(scope: Scope) -> str | None:
        value = _header(scope, name)
        if not value or not value.strip():
            return None
        digest = hashlib.blake2b(value.strip(), digest_size=16, person=b"sdk-api-key")
        return "key:" + digest.hexdigest()

    return key


def by_subject() -> KeyFunc:
    """Key by authenticated principal: ``"sub:<subject>"``, or None when anonymous."""

    def key(scope: Scope) -> str | None:
        principal = get_principal(scope)
        return None if principal is None else safe_key("sub:", principal.subject)

    return key


def by_subject_or_ip(
    trusted_proxies: Sequence[str] = (),
    *,
    header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
) -> KeyFunc:
    """The principal's subject when authenticated, else the client address."""
    client_ip = ClientIP(trusted_proxies, header=header)

    def key(scope: Scope) -> str:
        principal = get_principal(scope)
        if principal is not None:
            return safe_key("sub:", principal.subject)
        return safe_key("ip:", client_ip(scope))

    return key


def by_route(*, method: bool = True) -> KeyFunc:
    """Key by route template: ``"route:GET /items/{id}"`` rather than the concrete path.

    Uses ``scope["route"].path`` when routing already ran; in front of a Starlette or
    FastAPI router (where middleware sits) the app's routes are matched here to find the
    template. Otherwise, or when nothing matches, the concrete path is used.
    """

    def key(scope: Scope) -> str:
        template = _route_template(scope)
        if template is None:
            template = str(scope.get("path") or "/")
        if method:
            template = f"{scope.get('method', 'GET')} {template}"
        return safe_key("route:", template)

    return key


def _route_template(scope: Scope) -> str | None:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    router = getattr(scope.get("app"), "router", None)
    routes = getattr(router, "routes", None)
    if not routes:
        return None
    try:
        from starlette.routing import Match
    except ImportError:  # pragma: no cover - a router without starlette installed
        return None
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            path = getattr(candidate, "path", None)
            return path if isinstance(path, str) else None
    return None
