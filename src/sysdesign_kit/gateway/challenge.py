"""RFC 6750 challenges (``WWW-Authenticate``) for the gateway's 400/401/403.

Every challenge a client sees is built here, so it is escaped in one place: parameters are
quoted strings whose characters are limited to what RFC 6750 allows in
``error_description`` (printable ASCII without ``"`` and ``\\``), so nothing a client sent
can break out of the header. The problem+json body that goes with it is `_respond`'s.

::

    challenge = bearer_challenge(realm="api", error="invalid_token", description="expired")
    # b'Bearer realm="api", error="invalid_token", error_description="expired"'
    await send_problem(scope, send, 401, "expired", headers=[(b"www-authenticate", challenge)])
"""

from __future__ import annotations

import re

from sysdesign_kit.errors import ConfigurationError

__all__ = ["MAX_PARAM_LENGTH", "bearer_challenge", "challenge", "quoted", "safe_text"]

#: Longest text put in a challenge parameter (longer is cut): descriptions are short.
MAX_PARAM_LENGTH = 200

# RFC 6750 section 3: error, error_description and scope values are limited to
# %x20-21 / %x23-5B / %x5D-7E. Anything else is dropped rather than escaped.
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def safe_text(text: str, limit: int = MAX_PARAM_LENGTH) -> str:
    """``text`` with every character RFC 6750 forbids in a parameter removed, cut to ``limit``."""
    return _UNSAFE.sub("", text)[:limit]


def quoted(text: str) -> str:
    """``text`` as an RFC 9110 quoted-string (after `safe_text`, nothing needs escaping)."""
    return '"' + safe_text(text) + '"'


def challenge(scheme: str, **params: str | None) -> bytes:
    """One ``WWW-Authenticate`` challenge: ``Scheme name="value", ...`` (None values skipped).

    Raises:
        ConfigurationError: ``scheme`` or a parameter name is not an RFC 9110 token.
    """
    if not _TOKEN.fullmatch(scheme):
        raise ConfigurationError(f"challenge scheme {scheme!r} is not an HTTP token")
    parts = []
    for name, value in params.items():
        if value is None:
            continue
        if not _TOKEN.fullmatch(name):
            raise ConfigurationError(f"challenge parameter {name!r} is not an HTTP token")
        parts.append(f"{name}={quoted(value)}")
    text = scheme + (" " + ", ".join(parts) if parts else "")
    return text.encode("ascii")


def bearer_challenge(
    *,
    realm: str | None = None,
    error: str = "",
    description: str = "",
    scope: str = "",
) -> bytes:
    """An RFC 6750 ``Bearer`` challenge.

    With no ``error`` it carries only the realm: RFC 6750 says a request that had no
    credentials (or credentials of another scheme) is answered without an error code.

    Args:
        realm: the protection space, shown to clients (None: no realm parameter).
        error: ``invalid_request``, ``invalid_token`` or ``insufficient_scope`` (or empty).
        description: a short text for people; characters outside RFC 6750's set are dropped.
        scope: the scopes required, space-separated (with ``insufficient_scope``).
    """
    return challenge(
        "Bearer",
        realm=realm,
        error=error or None,
        error_description=(description or None) if error else None,
        scope=scope or None,
    )
