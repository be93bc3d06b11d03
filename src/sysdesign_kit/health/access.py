"""Who may see the details of a health response (outputs, values, ids)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, MutableMapping
from typing import Any, TypeAlias

from sysdesign_kit.errors import ConfigurationError

__all__ = ["DetailsPolicy", "require_token"]

#: Decides per request (from its ASGI scope) whether the caller may see details, e.g.
#: ``lambda scope: get_principal(scope) is not None`` behind your auth middleware.
DetailsPolicy: TypeAlias = Callable[[MutableMapping[str, Any]], bool]


def require_token(
    token: str, *, header: str = "authorization", scheme: str | None = "Bearer"
) -> DetailsPolicy:
    """A `DetailsPolicy` granting details to requests that present ``token``.

    Args:
        token: the shared secret (compared in constant time).
        header: the request header carrying it.
        scheme: the auth scheme before the token (``Authorization: Bearer <token>``);
            ``None`` when the header holds the bare token (``X-Health-Token: <token>``).

    Raises:
        ConfigurationError: an empty token or header.
    """
    if not isinstance(token, str) or not token:
        raise ConfigurationError("require_token: the token must be a non-empty string")
    if not isinstance(header, str) or not header:
        raise ConfigurationError("require_token: the header name must be a non-empty string")
    name = header.lower().encode("latin-1")
    secret = token.encode()
    wanted_scheme = scheme.lower().encode() if scheme else None

    def allowed(scope: MutableMapping[str, Any]) -> bool:
        for key, value in scope.get("headers") or ():
            if bytes(key).lower() != name:
                continue
            presented = bytes(value).strip()
            if wanted_scheme is not None:
                # The scheme is case-insensitive (RFC 9110); the token is not.
                given_scheme, _, presented = presented.partition(b" ")
                if given_scheme.lower() != wanted_scheme:
                    return False
            return hmac.compare_digest(presented.strip(), secret)
        return False

    return allowed
