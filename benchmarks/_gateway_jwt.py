"""Keys and tokens of the gateway benchmark, and pyjwt verifying them alone (the floor).

One key per algorithm the issue names (HS256, RS256, ES256, EdDSA), tokens shaped like the
demo's (``sub``, ``tier``, ``roles``, ``scope``, ``iat``, ``exp``, ``iss``, ``aud``, a
``kid`` header), and `pyjwt_verify`: what a service calling ``jwt.decode`` itself does,
with the same checks we make (allowed algorithm, ``exp`` required, ``aud``, ``iss``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["ALGORITHMS", "AUDIENCE", "ISSUER", "SigningKey", "make_key", "pyjwt_verify"]

ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
ISSUER = "https://issuer.bench"
AUDIENCE = "bench-api"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key pair (or HMAC secret) for one algorithm, and tokens minted with it."""

    alg: str
    kid: str
    private: Any
    public: Any

    def mint(self, count: int, *, ttl: int = 3600, subject: str = "bench-user") -> list[str]:
        """``count`` distinct tokens (each its own ``jti``, so each its own signature)."""
        now = int(time.time())
        return [
            jwt.encode(
                {
                    "sub": subject,
                    "tier": "premium",
                    "roles": ["admin"],
                    "scope": "read write",
                    "iat": now,
                    "exp": now + ttl,
                    "iss": ISSUER,
                    "aud": AUDIENCE,
                    "jti": secrets.token_hex(8),
                },
                self.private,
                algorithm=self.alg,
                headers={"kid": self.kid},
            )
            for _ in range(count)
        ]


def make_key(alg: str) -> SigningKey:
    """A fresh key for ``alg`` (RSA 2048, P-256, Ed25519, a 32-byte HMAC secret)."""
    private: Any
    if alg == "HS256":
        secret = secrets.token_bytes(32)
        return SigningKey(alg, "hs-1", secret, secret)
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"no benchmark key for {alg}")
    return SigningKey(alg, f"{alg.lower()}-1", private, private.public_key())


def pyjwt_verify(key: SigningKey) -> Callable[[str], Any]:
    """``jwt.decode`` with our checks: the key's algorithm only, exp required, aud, iss."""
    algorithms = [key.alg]
    public = key.public

    def verify(token: str) -> Any:
        return jwt.decode(
            token,
            public,
            algorithms=algorithms,
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iss", "aud"]},
        )

    return verify
