"""Who is calling: the authenticated principal that auth middleware places in the ASGI scope.

Components below the gateway (rate limiting, caching) read it from
``scope[PRINCIPAL_SCOPE_KEY]`` without importing the gateway. Anything that sets it (our
gateway, a user's own auth middleware, a test) uses this one type.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["PRINCIPAL_SCOPE_KEY", "Principal", "get_principal", "set_principal"]

#: The ASGI scope key under which the authenticated `Principal` is stored.
PRINCIPAL_SCOPE_KEY = "sysdesign_kit.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: stable identifier (user id, client id, API key id); never a secret.
        tier: the plan the caller is on, e.g. ``"free"`` or ``"premium"``.
        scopes: granted scopes such as ``"read"``, ``"write"``, ``"admin"``.
        roles: granted roles such as ``"admin"`` (RBAC maps them to permissions).
        tenant: the tenant the caller belongs to, when the service is multi-tenant.
        method: how the caller was authenticated: ``"jwt"``, ``"api_key"``,
            ``"introspection"``... (empty when set by hand).
        claims: the verified claims or attributes it came from (read-only; not compared).
    """

    subject: str
    tier: str = "free"
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None
    method: str = ""
    claims: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False, repr=False
    )


def get_principal(scope: MutableMapping[str, Any]) -> Principal | None:
    """The principal an auth layer stored in ``scope``, if any."""
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else None


def set_principal(scope: MutableMapping[str, Any], principal: Principal) -> None:
    """Store ``principal`` in ``scope`` for the layers below."""
    scope[PRINCIPAL_SCOPE_KEY] = principal
