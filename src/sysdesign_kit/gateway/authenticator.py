"""The contract of an authentication method: credentials in, a `Principal` out.

The authentication middleware parses the request (``Authorization: Bearer ...``,
``X-API-Key``...) and hands the credential string to the authenticator registered for it;
each method (JWT, API keys, OAuth introspection) implements this one protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sysdesign_kit.principal import Principal

__all__ = ["Authenticator"]


@runtime_checkable
class Authenticator(Protocol):
    """Turns one credential into a `Principal`.

    Attributes:
        method: the name the principal carries in ``method`` (``"jwt"``, ``"api_key"``...).
    """

    method: str

    async def authenticate(self, credential: str) -> Principal:
        """The principal ``credential`` proves.

        Raises:
            AuthenticationFailed: the credential is malformed (``invalid_request``), or
                invalid, expired, revoked, unknown (``invalid_token``).
            BackendUnavailable: what it checks against cannot answer now (an identity
                provider down, a breaker open: a `Rejected` such as `CircuitOpen` too);
                the middleware answers 503, never 401, so good clients keep good tokens.
        """
        ...
