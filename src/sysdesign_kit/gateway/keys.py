"""Verification keys and where they come from: the one type every key source produces.

A `VerificationKey` binds key material to the algorithms it may verify: a token whose
``alg`` is not among them is refused before any signature check, which is what closes the
HS/RS confusion (an RSA public key used as an HMAC secret) and ``alg: none``. Static keys,
PEM files and JWKS endpoints all produce these; the JWT verifier only asks a `KeySource`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["KeySource", "VerificationKey"]


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """Key material and the algorithms it may verify.

    Attributes:
        kid: the key id (None for a key used whatever the token's ``kid``).
        algorithms: the JWS ``alg`` values this key verifies (e.g. ``{"RS256", "PS256"}``).
        key: what pyjwt verifies with: HMAC secret bytes, or a ``cryptography`` public key.
        issuer: the issuer this key belongs to, when keys are per issuer (JWKS).
    """

    kid: str | None
    algorithms: frozenset[str]
    key: Any
    issuer: str | None = None


@runtime_checkable
class KeySource(Protocol):
    """Finds the key for a token's ``kid`` (and issuer)."""

    def get(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
        """The key for ``kid`` held now, without I/O; None if unknown."""
        ...

    async def fetch(self, kid: str | None, issuer: str | None = None) -> VerificationKey | None:
        """The key for ``kid``, refreshing from the source if it is unknown (rate-limited
        by the source); None if still unknown."""
        ...
