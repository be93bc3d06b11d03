"""A tiny API-key layer, for the demo only: ``X-API-Key`` -> `Principal` in the scope.

The seed's gateway authenticates (JWT, OAuth introspection, API keys) before the per-tier
rate limit; the kit's gateway component replaces this module in a later issue. Until then
this shows tiers: a known key puts ``Principal(subject, tier)`` where the rate limiter reads
it, no key means anonymous.

A wrong key is not answered at once: the request goes on as anonymous, so it is counted
against the caller's anonymous and per-IP limits, and only then `RejectUnknownKey` answers
401. Guessing keys is therefore throttled like any anonymous traffic.

The keys are public demo strings. Never ship fixed keys like these in a real service.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from starlette.types import ASGIApp, Receive, Scope, Send

from reference_system.problems import send_problem
from sysdesign_kit.principal import Principal, set_principal

__all__ = ["API_KEY_HEADER", "DEMO_KEYS", "ApiKeyAuth", "RejectUnknownKey"]

API_KEY_HEADER = "x-api-key"

#: Scope key set when a request carried an API key that is not known.
_UNKNOWN_KEY = "reference_system.unknown_api_key"


def _key(subject: str, tier: str, *scopes: str) -> Principal:
    return Principal(subject, tier, frozenset(scopes), method="api_key")


#: The demo's keys: several users per tier so one office (one IP) can hold many of them.
DEMO_KEYS: Mapping[str, Principal] = MappingProxyType(
    {
        "demo-free-key": _key("free-user-1", "free", "read"),
        "demo-free-key-2": _key("free-user-2", "free", "read"),
        "demo-free-key-3": _key("free-user-3", "free", "read"),
        "demo-premium-key": _key("premium-user-1", "premium", "read"),
        "demo-premium-key-2": _key("premium-user-2", "premium", "read"),
        "demo-premium-key-3": _key("premium-user-3", "premium", "read"),
        # An operator: may switch the payment service's outage on and off.
        "demo-admin-key": _key("operator-1", "premium", "read", "admin"),
    }
)


class ApiKeyAuth:
    """Pure ASGI: resolve the ``X-API-Key`` header to a `Principal` in the scope.

    Args:
        app: the wrapped ASGI app.
        keys: API key -> principal.
        header: the request header carrying the key (case-insensitive).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Mapping[str, Principal] = DEMO_KEYS,
        header: str = API_KEY_HEADER,
    ) -> None:
        self.app = app
        # Keys as the header bytes arrive, so a request costs one dict lookup and no decode.
        self._keys = {key.encode("latin-1"): principal for key, principal in keys.items()}
        self._header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == self._header:
                    principal = self._keys.get(value)
                    if principal is None:
                        scope[_UNKNOWN_KEY] = True
                    else:
                        set_principal(scope, principal)
                    break  # the first header wins; a second one cannot override it
        await self.app(scope, receive, send)


class RejectUnknownKey:
    """Pure ASGI: answer 401 problem+json for a request `ApiKeyAuth` could not resolve.

    Placed below the rate limiter so rejected guesses still count against the caller's limits.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(_UNKNOWN_KEY):
            await send_problem(
                send,
                401,
                "the X-API-Key header does not name a known API key",
                # RFC 9110 wants a challenge with every 401; API keys have no registered
                # scheme, so name the header the client should send.
                headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'},
            )
            return
        await self.app(scope, receive, send)
