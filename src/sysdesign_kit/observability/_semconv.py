"""HTTP semantic-convention details shared by the server and client spans.

Plain text handling, no OpenTelemetry import: which methods are "known", what a span name
says for the others, which query values are redacted, how ``error.type`` names an
exception and how ``server.address`` / ``server.port`` come out of a host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

from sysdesign_kit.errors import ConfigurationError

__all__ = [
    "DEFAULT_SENSITIVE_QUERY_PARAMS",
    "REDACTED",
    "error_type_of",
    "host_port",
    "is_sensitive",
    "known_methods",
    "method_attributes",
    "redact_query",
    "sensitive_names",
]

#: RFC 9110 methods and PATCH (RFC 5789): the semantic conventions' default known methods.
_DEFAULT_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
#: Query parameters (compared in lower case, after percent-decoding) whose values never reach
#: a span or a log line: the semantic conventions' list, plus the usual places credentials
#: travel in a URL. Any name containing ``token``, ``secret``, ``passw``, ``apikey``,
#: ``api_key``, ``signature`` or ``credential`` is sensitive too (``reset_token``,
#: ``db_password``, ``X-Amz-Signature``...): over-redacting costs nothing.
DEFAULT_SENSITIVE_QUERY_PARAMS = frozenset(
    (
        "awsaccesskeyid", "signature", "sig", "x-goog-signature",
        "x-amz-credential", "x-amz-security-token", "x-amz-signature",
        "access_token", "id_token", "refresh_token", "token", "code", "client_secret",
        "api_key", "apikey", "api-key", "key", "password", "passwd", "pwd", "secret",
        "auth", "authorization", "jwt", "session", "sessionid",
    )
)  # fmt: skip
_SENSITIVE_PARTS = re.compile("token|secret|passw|apikey|api_key|signature|credential")
#: What a span writes instead of a sensitive value (the semantic conventions' word).
REDACTED = "REDACTED"
_DIGITS = frozenset("0123456789")


def known_methods() -> frozenset[str]:
    """The methods reported as themselves; any other becomes ``_OTHER``.

    ``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`` (comma-separated, case-sensitive) replaces
    the default list, as the semantic conventions require of instrumentations that could
    otherwise turn a valid method into ``_OTHER``.
    """
    override = os.environ.get("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS")
    if override is None:
        return _DEFAULT_METHODS
    return frozenset(item.strip() for item in override.split(",") if item.strip())


def method_attributes(method: str, known: frozenset[str]) -> tuple[str, dict[str, str]]:
    """The span name's ``{method}`` part and the method attributes of a request.

    Methods are case-sensitive: ``get`` is not ``GET``, so it is ``_OTHER`` (named
    ``HTTP`` in span names) with the original kept in ``http.request.method_original``.
    """
    if method in known:
        return method, {"http.request.method": method}
    return "HTTP", {"http.request.method": "_OTHER", "http.request.method_original": method}


def sensitive_names(names: Iterable[str]) -> frozenset[str]:
    """The sensitive query parameter names: ``names`` lower-cased, plus the defaults.

    Names given are added to `DEFAULT_SENSITIVE_QUERY_PARAMS`, never in place of them, so
    configuring one more name cannot switch the built-in protection off.

    Raises:
        ConfigurationError: a single string (which would be taken letter by letter) or a
            name that is not a non-empty string.
    """
    if isinstance(names, str | bytes):
        raise ConfigurationError(
            f"sensitive_query_params must be a collection of names, not the string {names!r}"
        )
    result = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"sensitive_query_params: {name!r} is not a parameter name")
        result.add(name.lower())
    return DEFAULT_SENSITIVE_QUERY_PARAMS | result


def is_sensitive(name: str, sensitive: frozenset[str]) -> bool:
    """Whether query parameter ``name`` (as sent: maybe percent- or plus-encoded) is
    sensitive: in ``sensitive`` (lower-case names) or containing a credential-like word."""
    # Compared decoded: api%5Fkey is api_key to the server that reads it.
    lowered = (unquote_plus(name) if "%" in name or "+" in name else name).lower()
    return lowered in sensitive or _SENSITIVE_PARTS.search(lowered) is not None


def redact_query(query: str, sensitive: frozenset[str], marker: str = REDACTED) -> str:
    """``query`` with the value of every sensitive parameter (see `is_sensitive`) replaced
    by ``marker``.

    The parameter names stay, so the shape of the request remains visible.
    """
    parts = query.split("&")
    for index, part in enumerate(parts):
        name, sep, _ = part.partition("=")
        if sep and is_sensitive(name, sensitive):
            parts[index] = f"{name}={marker}"
    return "&".join(parts)


def error_type_of(exc: BaseException) -> str:
    """An exception's class named from its public package (``httpx.ConnectError``)."""
    cls = type(exc)
    public = [part for part in cls.__module__.split(".") if not part.startswith("_")]
    if not public or public == ["builtins"]:
        return cls.__qualname__
    return f"{'.'.join(public)}.{cls.__qualname__}"


def host_port(host: str, scheme: str) -> tuple[str, int]:
    """Split a ``Host`` value (``name``, ``name:port``, ``[v6]:port``) into address and port.

    A missing or malformed port is the scheme's default one.
    """
    if host.startswith("["):
        end = host.find("]")
        address, rest = (host[1:end], host[end + 1 :]) if end > 0 else (host, "")
    elif host.count(":") == 1:
        address, colon, digits = host.partition(":")
        rest = colon + digits
    else:
        address, rest = host, ""
    digits = rest[1:]
    if rest[:1] == ":" and 0 < len(digits) <= 5 and _DIGITS.issuperset(digits):
        number = int(digits)
        if number <= 65535:
            return address, number
    return address, 443 if scheme in ("https", "wss") else 80
